"""Data pruning: per-sample gradients against one backward pass per sample, LiSSA against the exact inverse-Hessian
product, influence against leave-one-out retraining, coverage selection's budget and bins, selection files, and
`recsys prune` end to end on tiny data (every method, the score cache, the fine-tuning that reads a selection)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from scipy import stats
from torch import nn
from transformers.pytorch_utils import Conv1D

from recsys.data.prompts import Windows
from recsys.data.selection import read_selection
from recsys.data.sequences import IGNORE
from recsys.errors import RunError
from recsys.pruning import METHODS, DataPruning, LiSSA
from recsys.pruning.gradients import last_attention_linear, linear_modules, per_sample_gradients
from recsys.pruning.scores import influence_and_norms, window_sequences
from recsys.pruning.selection import budget_of, combined_score, coverage_select, min_max, score_bins
from recsys.testing import two_communities


# ---------------------------------------------------------------------------------------------- per-sample gradients
class TwoLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.first, self.second = nn.Linear(3, 4), Conv1D(2, 4)

    def losses(self, x: torch.Tensor) -> torch.Tensor:  # x [B, T, 3] → [B]
        return self.second(torch.tanh(self.first(x))).pow(2).sum(-1).mean(-1)


def test_per_sample_gradients_equal_one_backward_pass_per_sample() -> None:
    model, x = TwoLayers(), torch.randn(5, 6, 3)
    got = per_sample_gradients(lambda: model.losses(x), model, [model.first, model.second])
    for b in range(5):
        model.zero_grad()
        model.losses(x[b : b + 1]).sum().backward()
        torch.testing.assert_close(got[0][b], model.first.weight.grad)
        torch.testing.assert_close(got[1][b], model.second.weight.grad)
    assert all(p.requires_grad for p in model.parameters())  # restored after the pass


def test_surrogate_gradients_are_each_windows_own_through_sasrec() -> None:
    from recsys.data.prompts import history_windows
    from recsys.data.sequences import Sequences
    from recsys.models.sasrec import SASRec
    from recsys.pruning.scores import SurrogateScores
    from recsys.tasks.sequential import SequentialTask

    train, _ = two_communities()
    task = SequentialTask(SASRec(hidden_size=8, layers=2, heads=2, inner_size=16, max_len=6), loss="bce", seed=0)
    task.restore(train)
    task.eval()
    windows = history_windows(Sequences.from_interactions(train), max_history=5, stride=3)
    scorer = SurrogateScores(task, windows, batch_size=4)
    samples = torch.tensor([0, 3, 5])
    together = scorer.gradients(samples)
    weight = task.model.blocks[1].out.weight
    for row, sample in enumerate(samples.tolist()):
        task.zero_grad()
        task.losses(scorer.batch(torch.tensor([sample]))).sum().backward()
        torch.testing.assert_close(together[row], weight.grad.reshape(-1))
    lissa = LiSSA(depth=20, samples_per_step=4)
    scores = scorer.scores(lissa)
    assert all(len(v) == len(windows) and np.isfinite(v).all() for v in scores.values())


def test_module_patterns_and_the_default_attention_projection() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.ModuleDict({"q": nn.Linear(2, 2), "out": nn.Linear(2, 2)})
            self.head = nn.Linear(2, 2)

    net = Net()
    assert last_attention_linear(net) == "attn.out"
    assert [n for n, _ in linear_modules(net, ["attn.*"], "x")] == ["attn.q", "attn.out"]
    with pytest.raises(RunError, match="'attn.v' names no linear module"):
        linear_modules(net, ["attn.v"], "effort_modules")


# ---------------------------------------------------------------------------------------------- LiSSA and influence
def logistic_problem(n: int = 40, d: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=generator, dtype=torch.float64)
    noise = 0.8 * torch.randn(n, generator=generator, dtype=torch.float64)
    return x, (x @ torch.tensor([1.5, -2.0, 0.5], dtype=torch.float64) + noise > 0).double()


REG = 0.05
"""L2 weight of the convex test problem: the objective is the mean logistic loss + REG/2 ‖w‖²."""


def logistic_gradients(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``[n, d]`` each sample's logistic-loss gradient, by hand."""
    return (torch.sigmoid(x @ w) - y)[:, None] * x


def hessian(w: torch.Tensor, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The objective's Hessian ``[d, d]`` over (weighted) samples, by hand."""
    p = torch.sigmoid(x @ w)
    weights = torch.ones(len(x), dtype=x.dtype) if weights is None else weights
    return (x.T * (weights * p * (1 - p))) @ x / weights.sum() + REG * torch.eye(x.shape[1], dtype=x.dtype)


def fitted(x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Newton's method to the objective's optimum over (weighted) samples."""
    w = torch.zeros(x.shape[1], dtype=torch.float64)
    weights = torch.ones(len(x), dtype=torch.float64) if weights is None else weights
    for _ in range(25):
        g = (weights[:, None] * logistic_gradients(w, x, y)).sum(0) / weights.sum() + REG * w
        w = w - torch.linalg.solve(hessian(w, x, weights), g)
    return w


def hvp_of(w: torch.Tensor, x: torch.Tensor):
    return lambda samples, vector: hessian(w, x[samples]) @ vector


def test_lissa_matches_the_exact_inverse_hessian_product() -> None:
    x, y = logistic_problem()
    w = fitted(x, y)
    v = torch.tensor([0.3, -1.0, 0.7], dtype=torch.float64)
    lissa = LiSSA(depth=3000, damping=0.001, scale=5.0, samples_per_step=len(x))  # the full batch: deterministic
    exact = torch.linalg.solve(hessian(w, x) + 0.001 * 5.0 * torch.eye(3, dtype=torch.float64), v)
    torch.testing.assert_close(lissa.solve(hvp_of(w, x), v, len(x)), exact, rtol=1e-6, atol=1e-8)
    stochastic = LiSSA(depth=3000, damping=0.001, scale=5.0, repeats=8, seed=1).solve(hvp_of(w, x), v, len(x))
    assert torch.linalg.norm(stochastic - exact) / torch.linalg.norm(exact) < 0.1  # one sample's Hessian per step


def test_influence_ranks_samples_as_leave_one_out_retraining() -> None:
    """Removing sample s changes the empirical risk R (the mean logistic loss) by ≈ (1/n) ∇R(θ̂)ᵀ H⁻¹ ∇L_s; with
    the regulariser ∇R(θ̂) = −REG·θ̂ ≠ 0, so DEALRec's v (the mean of the samples' loss gradients) is not zero. The
    influence scores must order the samples as exact retraining without each one does."""
    x, y = logistic_problem(n=200)
    n = len(x)
    w = fitted(x, y)
    gradients = lambda samples: logistic_gradients(w, x[samples], y[samples])  # noqa: E731
    influence, norms = influence_and_norms(gradients, hvp_of(w, x), n, LiSSA(depth=2000, damping=0.0, scale=5.0,
                                                                            samples_per_step=n), batch_size=7)  # fmt: skip
    g = gradients(torch.arange(n))
    torch.testing.assert_close(torch.from_numpy(influence), g @ torch.linalg.solve(hessian(w, x), g.mean(0)))
    torch.testing.assert_close(torch.from_numpy(norms), g.norm(dim=1))
    risk = lambda u: nn.functional.binary_cross_entropy_with_logits(x @ u, y)  # noqa: E731
    actual = []
    for s in range(n):
        keep = torch.ones(n, dtype=torch.float64)
        keep[s] = 0.0
        actual.append(float(risk(fitted(x, y, keep)) - risk(w)))
    rho = stats.spearmanr(influence, actual).statistic
    assert rho > 0.9, f"Spearman of influence scores vs leave-one-out retraining: {rho:.3f}"


def test_lissa_divergence_is_an_error_naming_scale() -> None:
    with pytest.raises(RunError, match="raise scale"):
        LiSSA(depth=500, scale=0.01).solve(lambda s, v: 10.0 * v, torch.ones(2), 5)


# ---------------------------------------------------------------------------------------------- selection
def test_min_max_combined_score_and_bins_by_hand() -> None:
    np.testing.assert_allclose(min_max(np.array([2.0, 4.0, 3.0])), [0.0, 1.0, 0.5])
    np.testing.assert_allclose(min_max(np.array([1.0, 1.0])), [0.0, 0.0])
    np.testing.assert_allclose(combined_score(np.array([0.0, 1.0, 2.0]), np.array([10.0, 30.0, 20.0]), 0.5), [0.0, 1.0, 1.25])
    # width 1 over [0, 4]: the first bin whose upper edge is ≥ the score
    assert score_bins(np.array([0.0, 0.5, 1.0, 1.01, 4.0]), 4).tolist() == [0, 0, 0, 1, 3]


@pytest.mark.parametrize("seed", range(6))
def test_coverage_selection_hits_its_budget_and_every_bin(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = np.concatenate([rng.normal(0, 1, 400), rng.normal(6, 0.2, 30)])  # a long tail and a dense clump
    budget, bins = int(rng.integers(20, 120)), int(rng.integers(5, 20))
    chosen, assignment = coverage_select(scores, budget, bins, hard_prune=0.1, rng=rng)
    assert len(chosen) == budget == len(np.unique(chosen))
    assert (assignment[chosen] >= 0).all()  # never a hard-pruned sample
    assert (assignment == -1).sum() == 43 and scores[assignment == -1].min() >= scores[assignment >= 0].max()
    assert set(np.unique(assignment[assignment >= 0])) == set(np.unique(assignment[chosen]))


def test_budget_and_ratio_errors() -> None:
    assert budget_of(0.02, 1000) == 20 and budget_of(1.0, 7) == 7
    for ratio in (0.0, -0.1, 1.5):
        with pytest.raises(RunError, match=r"ratio must be in \(0, 1\]"):
            budget_of(ratio, 100)
    with pytest.raises(RunError, match="smaller than the 50 score bins"):
        coverage_select(np.arange(100.0), 10, 50, 0.1, np.random.default_rng(0))


def test_window_sequences_shift_the_history_onto_the_target() -> None:
    windows = Windows(users=np.array([0, 1]), indptr=np.array([0, 2, 3]), history=np.array([4, 5, 6]),
                      targets=np.array([7, 8]), positions=np.array([2, 1]))  # fmt: skip
    inputs, targets = window_sequences(windows, pad=9)
    assert inputs.tolist() == [[4, 5], [9, 6]]
    assert targets.tolist() == [[5, 7], [IGNORE, 8]]


# ---------------------------------------------------------------------------------------------- selection files
def test_selection_files_name_their_bad_row(tmp_path: Path) -> None:
    train, _ = two_communities()
    first = train.decoded().filter(pl.col("user") == "u0").sort("timestamp")
    good = pl.DataFrame({"user": ["u0"], "position": [2], "item": [first["item"][2]]})
    good.write_parquet(tmp_path / "good.parquet")
    selection = read_selection(tmp_path / "good.parquet", train)
    assert len(selection) == 1 and selection.positions.tolist() == [2]
    cases = {
        "user": (["nobody"], [1], [first["item"][1]], "no such user"),
        "position": (["u0"], [99], [first["item"][1]], "positions 1..9"),
        "item": (["u0"], [1], [first["item"][2]], "another item is at that position"),
    }
    for name, (users, positions, items, why) in cases.items():
        pl.DataFrame({"user": users, "position": positions, "item": items}).write_parquet(tmp_path / f"{name}.parquet")
        with pytest.raises(RunError, match=f"row 0 .* names no training sample .*{why}"):
            read_selection(tmp_path / f"{name}.parquet", train)
    pl.DataFrame({"user": ["u0"], "item": ["i1"]}).write_parquet(tmp_path / "short.parquet")
    with pytest.raises(RunError, match=r"lacks column\(s\) \['position'\]"):
        read_selection(tmp_path / "short.parquet", train)
    pl.concat([good, good]).write_parquet(tmp_path / "twice.parquet")
    with pytest.raises(RunError, match="row 1 repeats a sample"):
        read_selection(tmp_path / "twice.parquet", train)
    with pytest.raises(RunError, match="no such selection file"):
        read_selection(tmp_path / "missing.parquet", train)


# ---------------------------------------------------------------------------------------------- recsys prune end to end
@pytest.fixture(scope="module")
def pruning_configs(tiny_dataset_module: Path) -> tuple[Path, Path]:
    """A tiny copy of bigrec.yaml (tiny data, a one-layer catalogue LM) and a pruning YAML over it."""
    import yaml

    folder = tiny_dataset_module
    finetune = yaml.safe_load(Path("experiments/ml-100k/bigrec.yaml").read_text())
    finetune["data"]["dataset"] = "tiny"
    finetune["trainer"]["enable_progress_bar"] = False
    lm = finetune["model"]["init_args"]
    lm["model"]["init_args"]["catalogue"] = {"vocab_size": 300, "layers": 1, "hidden": 32, "heads": 2, "positions": 256, "epochs": 1}
    lm.update(gamma=0.0, max_prompt_tokens=240, stride=3)
    (folder / "bigrec.yaml").write_text(yaml.safe_dump(finetune))
    pruning = yaml.safe_load(Path("experiments/ml-100k/dealrec.yaml").read_text())
    pruning["fewshot"] = {"trainer.max_epochs": 1}
    surrogate = pruning["pruning"]["surrogate"]["init_args"]["model"]["init_args"]
    surrogate.update(hidden_size=8, layers=1, heads=1, inner_size=16, max_len=12)
    pruning["pruning"].update(ratio=0.25, bins=5, surrogate_epochs=2, score_batch_size=16, effort_batch_size=8,
                              lissa={"class_path": "recsys.pruning.LiSSA", "init_args": {"depth": 50}})  # fmt: skip
    (folder / "dealrec.yaml").write_text(yaml.safe_dump(pruning))
    return folder / "bigrec.yaml", folder / "dealrec.yaml"


def test_recsys_prune_every_method_at_one_budget_from_cached_scores(pruning_configs, tiny_dataset_module, capsys) -> None:
    from recsys.cli import main

    _, config = pruning_configs
    out = tiny_dataset_module / "prune"
    assert main(["prune", "--config", str(config), "--output", str(out / "dealrec"), "--no-progress"]) == 0
    for name in ("selection.parquet", "scores.parquet", "prune.json", "report.md", "scores.png", "bins.png"):
        assert (out / "dealrec" / name).exists(), name
    record = json.loads((out / "dealrec" / "prune.json").read_text())
    scores = pl.read_parquet(out / "dealrec" / "scores.parquet")
    assert not record["scores_cached"] and record["budget"] == round(0.25 * len(scores)) and len(scores) == record["samples"]
    assert scores.select(pl.col("influence", "effort", "grand", "el2n", "combined").is_finite().all()).row(0) == (True,) * 5
    assert scores["effort"].min() > 0 and scores["grand"].min() > 0
    selection = pl.read_parquet(out / "dealrec" / "selection.parquet")
    assert len(selection) == record["budget"] and selection["sample"].to_list() == scores.filter("selected")["sample"].to_list()
    assert "fine-tune on it: recsys fit --config" in capsys.readouterr().out
    for method in METHODS[1:]:
        assert main(["prune", "--config", str(config), "--method", method, "--output", str(out / method), "--no-progress"]) == 0
        other = json.loads((out / method / "prune.json").read_text())
        assert other["scores_cached"] and other["cache_key"] == record["cache_key"] and other["budget"] == record["budget"]
    assert pl.read_parquet(out / "random" / "scores.parquet")["influence"].equals(scores["influence"])
    assert main(["prune", "--config", str(config), "--seed", "7", "--output", str(out / "seed7"), "--no-progress"]) == 0
    assert json.loads((out / "seed7" / "prune.json").read_text())["cache_key"] != record["cache_key"]  # never stale


def test_recsys_prune_refuses_bad_ratios_budgets_and_used_folders(pruning_configs, tiny_dataset_module, capsys) -> None:
    from recsys.cli import main

    _, config = pruning_configs
    out = tiny_dataset_module / "refused"
    for args, message in ((["--ratio", "0"], "ratio must be in (0, 1]"), (["--ratio", "1.5"], "ratio must be in (0, 1]"),
                          (["--ratio", "0.02"], "smaller than the 5 score bins")):  # fmt: skip
        assert main(["prune", "--config", str(config), *args, "--output", str(out / "x"), "--no-progress"]) == 2
        assert message in capsys.readouterr().err
    (out / "used").mkdir(parents=True)
    (out / "used" / "keep.txt").write_text("mine")
    assert main(["prune", "--config", str(config), "--output", str(out / "used"), "--no-progress"]) == 2
    assert "is not empty" in capsys.readouterr().err and (out / "used" / "keep.txt").read_text() == "mine"


def test_fine_tuning_reads_a_selection_and_records_it(pruning_configs, tiny_dataset_module, monkeypatch, capsys) -> None:
    from recsys.cli import main

    finetune, config = pruning_configs
    monkeypatch.setenv("RECSYS_RUNS_DIR", str(tiny_dataset_module / "runs"))
    out = tiny_dataset_module / "for-fit"
    assert main(["prune", "--config", str(config), "--output", str(out), "--no-progress"]) == 0
    selection = out / "selection.parquet"
    args = ["fit", "--config", str(finetune), "--trainer.max_epochs", "1", "--data.selection", str(selection)]
    assert main(args) == 0
    run = next((tiny_dataset_module / "runs" / "tiny" / "bigrec").glob("version_*"))
    record = json.loads((run / "results.json").read_text())[0]
    assert record["selection"] == str(selection) and record["selected_samples"] == len(pl.read_parquet(selection))
    assert "selection" in (run / "report.md").read_text()
    from recsys.data.registry import load
    from recsys.data.splits import split

    train, _, _ = split(load("tiny"), "loo", seed=2026)
    user = pl.read_parquet(selection)["user"][0]
    history = train.decoded().filter(pl.col("user") == user).sort("timestamp")["item"]
    # a real training target, but no window ends there (windows end every 3rd item back from the last)
    pl.DataFrame({"user": [user], "position": [len(history) - 2], "item": [history[len(history) - 2]]}).write_parquet(out / "off.parquet")
    capsys.readouterr()
    assert main(["fit", "--config", str(finetune), "--trainer.max_epochs", "1", "--data.selection", str(out / "off.parquet")]) == 2
    assert "row 0" in (err := capsys.readouterr().err) and "is not one of this task's training windows" in err


def test_the_shipped_pruning_run_builds_typed() -> None:
    from recsys.pruning.job import read_pruning_run

    run = read_pruning_run("experiments/ml-100k/dealrec.yaml")
    assert run.finetune.name == "bigrec.yaml" and run.pruning.method == "dealrec" and run.pruning.ratio == 0.02
    assert run.pruning.surrogate.loss_name == "bce" and run.pruning.lissa.depth == 5000
    assert "--data.selection" in run.finetune_overrides(selection="s.parquet")
    with pytest.raises(RunError, match="pruning: .*lamda"):
        read_pruning_run("experiments/ml-100k/dealrec.yaml", lamda=1.0)


def test_tasks_whose_samples_are_not_selected_refuse_a_selection(tmp_path: Path) -> None:
    from recsys.models.sasrec import SASRec
    from recsys.tasks.sequential import SequentialTask

    train, _ = two_communities()
    first = train.decoded().filter(pl.col("user") == "u0").sort("timestamp")
    pl.DataFrame({"user": ["u0"], "position": [1], "item": [first["item"][1]]}).write_parquet(tmp_path / "s.parquet")
    task = SequentialTask(SASRec(hidden_size=8, layers=1, heads=1, inner_size=8, max_len=5), seed=0)
    with pytest.raises(RunError, match="SequentialTask cannot train on a sample selection"):
        task.fit(train, max_epochs=1, selection=tmp_path / "s.parquet")


# ---------------------------------------------------------------------------------------------- reproduce_dealrec.py
@pytest.fixture(scope="module")
def reproduce():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "reproduce_dealrec.py"
    spec = importlib.util.spec_from_file_location("reproduce_dealrec", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_selection_grid_crosses_settings_and_each_method_reads_only_its_own(reproduce) -> None:
    variants = reproduce.grid_variants(["lam=0.5,2", "hard_prune=0,0.1", "bins=25"])
    assert variants == [{"lam": 0.5, "hard_prune": 0.0, "bins": 25}, {"lam": 0.5, "hard_prune": 0.1, "bins": 25},
                        {"lam": 2.0, "hard_prune": 0.0, "bins": 25}, {"lam": 2.0, "hard_prune": 0.1, "bins": 25}]  # fmt: skip
    assert reproduce.grid_variants([]) == [{}]
    assert reproduce.variant_of("random", variants[3]) == {}
    assert reproduce.variant_of("greedy", variants[3]) == {"lam": 2.0}
    assert reproduce.variant_of("ccs", variants[3]) == {"hard_prune": 0.1, "bins": 25}
    assert reproduce.label("dealrec", variants[1]) == "dealrec lam=0.5 hard_prune=0.1 bins=25"
    assert reproduce.label("random", {}) == "random"
    with pytest.raises(SystemExit, match="KEY one of"):
        reproduce.grid_variants(["damping=0.1"])


def test_each_dealrec_variant_is_tested_against_every_other_method_on_per_user_means(reproduce) -> None:
    users = np.arange(6)
    ours = np.array([0.0, 1.0, 0.5, 0.2, 0.0, 1.0])
    rows = [("dealrec lam=2", 2026, ours), ("dealrec lam=2", 2027, ours + 0.1),  # seeds average to ours + 0.05
            ("random", 2026, ours * 0.5), ("full", 2026, np.full(6, 0.4))]
    frame = pl.concat([pl.DataFrame({"user": users, "ndcg@10": values, "method": name,
                                     "ratio": 1.0 if name == "full" else 0.02, "seed": seed})
                       for name, seed, values in rows])  # fmt: skip
    tests = {t["b"]: t for t in reproduce.comparisons(frame)}
    assert set(tests) == {"random", "full"} and all(t["a"] == "dealrec lam=2" for t in tests.values())
    assert tests["random"]["mean_a"] == pytest.approx(ours.mean() + 0.05)
    assert tests["random"]["mean_b"] == pytest.approx(ours.mean() * 0.5)
    assert tests["random"]["t_pvalue"] == pytest.approx(stats.ttest_rel(ours + 0.05, ours * 0.5).pvalue)
    assert tests["full"]["n_users"] == 6 and tests["full"]["mean_b"] == pytest.approx(0.4)
