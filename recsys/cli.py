"""The ``recsys`` command. Heavy libraries are imported inside each command, so ``recsys --help`` is instant."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

from recsys.outputs import RUNS_ENV


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from err


def _str_list(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _pin_threads(value: object, what: str) -> None:
    """Pin every fit of this process (and of its workers) to ``value`` torch threads, as ``RECSYS_THREADS`` does;
    a `RunError` (one ``recsys: error:`` line) naming ``what`` when ``value`` is not a positive integer."""
    from recsys.errors import RunError
    from recsys.threads import pin_threads, positive_threads

    try:
        pin_threads(positive_threads(str(value), what))
    except ValueError as err:
        raise RunError(str(err)) from err


BENCHMARK_DEFAULTS: dict = {
    "dataset": "ml-100k",
    "protocol": "user-811",
    "models": ("pop", "itemknn", "ease", "als", "bpr", "mf-bpr", "mf-bpr-tuned", "neumf"),
    "seeds": (2026, 2027, 2028),
    "k": (1, 5, 10, 20, 50),
    "output": "results/benchmark",
    "threads": None,
}
"""Options of `recsys benchmark` when neither a flag nor ``--config`` sets them (models: `DEFAULT_MODELS`)."""


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("recsys")
    except metadata.PackageNotFoundError:  # a checkout on PYTHONPATH, not installed
        from recsys import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recsys",
        description="Recommender-systems framework: datasets, baselines, full-ranking evaluation, benchmarks.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    parser.add_argument("--version", action="version", version=f"recsys {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in LIGHTNING_COMMANDS:  # handled by LightningCLI before argparse runs; listed here for --help
        threads = " [--threads N]" if name == "fit" else ""
        commands.add_parser(name, help=f"Lightning {name}: recsys {name}{threads} --config experiments/<dataset>/<model>.yaml "
                            f"(run folders under --trainer.default_root_dir, else ${RUNS_ENV}, else ./runs)",
                            add_help=False)  # fmt: skip

    data = commands.add_parser("data", help="prepare, import and describe datasets")
    data_cmds = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    data_cmds.add_parser("list", help="list dataset cards and prepared datasets")
    prepare = data_cmds.add_parser("prepare", help="download (or find offline), verify and cache a dataset")
    prepare.add_argument("name")
    prepare.add_argument("--source", help="use only this source of the card")
    prepare.add_argument("--force", action="store_true", help="prepare again even if cached")
    imp = data_cmds.add_parser("import", help="import your own CSV / TSV / Parquet interactions")
    imp.add_argument("file", type=Path)
    imp.add_argument("--name", help="dataset name in the cache (default: the file's stem)")
    imp.add_argument("--user-col", required=True)
    imp.add_argument("--item-col", required=True)
    imp.add_argument("--rating-col")
    imp.add_argument("--timestamp-col")
    imp.add_argument("--separator", help="field separator (default: tab for .tsv, comma otherwise)")
    imp.add_argument("--force", action="store_true", help="replace a dataset that already exists under --name")
    describe = data_cmds.add_parser("describe", help="counts, density and history-length statistics")
    describe.add_argument("name")

    bench = commands.add_parser("benchmark", help="fit and evaluate models over seeds; leaderboard + report")
    bench.add_argument("--config", type=Path, help="YAML with any of: " + ", ".join(BENCHMARK_DEFAULTS))
    bench.add_argument("--dataset", help="dataset card or imported name (default ml-100k)")
    bench.add_argument("--protocol", choices=["user-811", "global-811", "loo", "temporal", "mnar-mar"], help="default user-811")
    bench.add_argument("--models", type=_str_list, help="comma-separated (default: all baselines)")
    bench.add_argument("--seeds", type=_int_list, help="default 2026,2027,2028")
    bench.add_argument("--k", type=_int_list, help="cut-offs (default 1,5,10,20,50)")
    bench.add_argument("--output", type=Path, help="default results/benchmark")
    bench.add_argument("--threads", type=int, help="torch threads of every fit, as RECSYS_THREADS=N (default: a share "
                       "of the cores among the recsys processes training)")  # fmt: skip
    bench.add_argument("--no-progress", action="store_true")

    audit = commands.add_parser("audit", help="is a dataset shortcut-solvable? TGH vs SASRec + three diagnostics")
    audit.add_argument("--dataset", required=True, help="dataset card or imported name")
    audit.add_argument("--output", type=Path, required=True, help="folder for report.md, audit.json and plots")
    audit.add_argument("--encoder", default="minilm", help="item text encoder: minilm, tfidf, features or a model folder")
    audit.add_argument("--epochs", type=int, default=200, help="SASRec's maximum epochs (early stopping on validation; "
                       "the verdict is inconclusive below 20 or while validation still improves)")  # fmt: skip
    audit.add_argument("--seed", type=int, default=2026)
    audit.add_argument("--no-progress", action="store_true", help="no progress bar while SASRec trains")

    ev = commands.add_parser("evaluate", help="evaluate an external run (user, item, score of raw ids)")
    ev.add_argument("--run", type=Path, required=True, help="Parquet/CSV with a user, an item and a score column")
    ev.add_argument("--test", type=Path, required=True, help="Parquet/CSV with a user and an item column")
    ev.add_argument("--exclude", type=Path, nargs="*", default=[], help="interactions never to count (user, item)")
    ev.add_argument("--user-col", default="user", help="the user column of every file (default user)")
    ev.add_argument("--item-col", default="item", help="the item column of every file (default item)")
    ev.add_argument("--score-col", default="score", help="the score column of --run (default score)")
    ev.add_argument("--k", type=_int_list, default=(10, 20))
    ev.add_argument("--output", type=Path, help="write summary.json and per_user.parquet here")

    prune = commands.add_parser("prune", help="DEALRec data pruning of the LLM recommender's fine-tuning samples "
                                "(or a baseline selection at the same budget)")  # fmt: skip
    prune.add_argument("--config", type=Path, required=True, help="pruning run, e.g. experiments/ml-100k/dealrec.yaml")
    prune.add_argument("--ratio", type=float, help="share of samples kept, in (0, 1] (default: the YAML's)")
    prune.add_argument("--method", help="dealrec, random, grand, el2n, ccs, greedy or influence-only (default: the YAML's)")
    prune.add_argument("--seed", type=int, help="seed of the surrogate, the scores and the random draws (default: the YAML's)")
    prune.add_argument("--output", type=Path, required=True, help="a new folder for selection.parquet, scores.parquet, "
                       "prune.json, report.md and the plots")  # fmt: skip
    prune.add_argument("--no-progress", action="store_true")

    tune = commands.add_parser("tune", help="Optuna study of a model's hyper-parameters; --show writes its report")
    tune.add_argument("--config", type=Path, required=True, help="study spec, e.g. experiments/ml-100k/tune-mf-bpr.yaml")
    tune.add_argument("--n-trials", type=int, help="run until the study holds this many complete + pruned trials "
                      "(default: the spec's n_trials, 30)")  # fmt: skip
    tune.add_argument("--storage", help="sqlite:///studies.db, another SQLAlchemy URL, or journal:FILE (default: memory)")
    tune.add_argument("--study-name", help="default: the spec file's name")
    tune.add_argument("--n-jobs", type=int, default=1, help="worker processes sharing --storage (default 1)")
    tune.add_argument("--threads", type=int, help="torch threads of every trial and retrain (default: cores // --n-jobs "
                      "each; with one job, a share of the cores among the recsys processes training)")  # fmt: skip
    tune.add_argument("--show", action="store_true", help="report the stored study: best trial, best.yaml, retrains, plots")
    tune.add_argument("--output", type=Path, help="report folder (default results/tune/<study-name>)")
    tune.add_argument("--seeds", type=_int_list, default=(2026, 2027, 2028), help="retrain seeds of --show")
    tune.add_argument("--no-retrain", action="store_true", help="--show without the test-set retrains")
    return parser


LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    from recsys.data.validation import DataError
    from recsys.errors import RunError

    lightning = bool(words) and words[0] in LIGHTNING_COMMANDS
    args = None if lightning else build_parser().parse_args(words)
    verbose = args is not None and args.verbose
    # force: each call logs to the stderr of now (a second main() in one process would keep a stale stream)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s", force=True)
    try:
        if args is None:
            return _lightning(words, argv)
        if args.command == "data":
            return _data(args)
        if args.command == "benchmark":
            return _benchmark(args)
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "audit":
            return _audit(args)
        if args.command == "tune":
            return _tune(args)
        if args.command == "prune":
            return _prune(args)
    except (DataError, RunError, KeyError, FileNotFoundError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"recsys: error: {message}", file=sys.stderr)
        return 2
    return 1


def _lightning(words: list[str], argv: Sequence[str] | None) -> int:
    """``recsys fit|validate|test|predict``: a ``recommender:`` run through the engine, else LightningCLI."""
    if words[0] == "fit":
        words = _take_threads(words)
        if argv is None:
            sys.argv[1:] = words  # LightningCLI reads the process's command line itself
    recommender = _recommender_run(words)
    if recommender is not None:
        from recsys.runs import run_recommender

        run_recommender(recommender)
        return 0
    from recsys.errors import RunError
    from recsys.lightning_cli import main as lightning_main

    try:
        lightning_main(None if argv is None else words)  # None: LightningCLI reads sys.argv itself
    except ValueError as err:  # a constructor's range check (batch_size: -5) raised while the config was built
        raise RunError(str(err)) from err
    return 0


def _take_threads(words: list[str]) -> list[str]:
    """The words of ``recsys fit`` without ``--threads N`` (or ``--threads=N``), which pins the process to N
    threads here (LightningCLI does not know the flag)."""
    for i, word in enumerate(words):
        if word == "--threads" or word.startswith("--threads="):
            joined = "=" in word
            value = word.partition("=")[2] if joined else (words[i + 1] if i + 1 < len(words) else "")
            _pin_threads(value, "--threads")
            return words[:i] + words[i + (1 if joined else 2):]
    return words


def _recommender_run(words: list[str]):
    """The ``recommender:`` run that ``recsys fit|test --config FILE`` (or ``-c FILE``, ``--config=FILE``) names,
    or None for a Lightning config (which LightningCLI handles, with every Lightning option)."""
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument("-c", "--config", action="append", default=[])
    known, rest = flags.parse_known_args(words[1:])
    path = Path(known.config[-1]) if known.config else None
    if path is None or path.suffix not in (".yaml", ".yml") or not path.exists():
        return None
    from recsys.runs import named_run

    run = named_run(path)
    if run.kind != "recommender":
        return None
    if words[0] not in ("fit", "test") or rest or len(known.config) > 1:
        raise SystemExit(f"recsys: error: {path} is a recommender run: `recsys fit --config {path}` fits and tests "
                         f"it (change its arguments in the file; set ${RUNS_ENV} to move its run folder)")  # fmt: skip
    return run


def _data(args: argparse.Namespace) -> int:
    from recsys.data import registry

    if args.data_command == "list":
        print(f"{'dataset':22s} {'prepared':9s} sources")
        for name, card in registry.available_cards().items():
            mark = "yes" if registry.is_prepared(name) else "-"
            print(f"{name:22s} {mark:9s} {', '.join(s.name for s in card.sources)}")
        for name, folder in registry.imported_datasets().items():
            print(f"{name:22s} {'yes':9s} imported ({folder})")
        return 0
    if args.data_command == "prepare":
        folder = registry.prepare(args.name, source=args.source, force=args.force)
        print(json.dumps(json.loads((folder / "meta.json").read_text()), indent=2))
        return 0
    if args.data_command == "import":
        folder = registry.import_file(
            args.file,
            name=args.name or args.file.stem,
            user_col=args.user_col,
            item_col=args.item_col,
            rating_col=args.rating_col,
            timestamp_col=args.timestamp_col,
            separator=args.separator,
            force=args.force,
        )
        print(f"imported {args.file} into {folder}")
        return 0
    stats = registry.load(args.name).describe()
    for key, value in stats.items():
        print(f"{key:16s} {value:.6g}" if isinstance(value, float) else f"{key:16s} {value}")
    return 0


def _benchmark_options(args: argparse.Namespace) -> dict:
    """Benchmark options: command-line flags, else the ``--config`` YAML (a shipped one by its repository path, from
    any directory), else `BENCHMARK_DEFAULTS`."""
    options = dict(BENCHMARK_DEFAULTS)
    if args.config:
        from recsys.resources import config_path
        from recsys.runs import read_yaml

        config = config_path(args.config)
        spec = read_yaml(config)  # one error for a missing, unreadable, empty or non-mapping file
        unknown = set(spec) - set(BENCHMARK_DEFAULTS)
        if unknown:
            raise KeyError(f"{config}: unknown key(s) {sorted(unknown)}; allowed: {sorted(BENCHMARK_DEFAULTS)}")
        options.update(spec)
    options.update({key: getattr(args, key) for key in BENCHMARK_DEFAULTS if getattr(args, key) is not None})
    options["models"] = tuple(options["models"])
    options["seeds"] = tuple(int(v) for v in options["seeds"])
    options["k"] = tuple(int(v) for v in options["k"])
    options["output"] = Path(options["output"])
    return options


def _benchmark(args: argparse.Namespace) -> int:
    from recsys.benchmark import format_leaderboard, run_benchmark

    options = _benchmark_options(args)
    if options["threads"] is not None:
        _pin_threads(options["threads"], "threads")
    result = run_benchmark(
        options["dataset"],
        protocol=options["protocol"],
        models=options["models"],
        seeds=options["seeds"],
        ks=options["k"],
        output=options["output"],
        progress=not args.no_progress,
    )
    print(format_leaderboard(result.leaderboard))
    print(f"\nwrote {options['output']}/: report.md, results.json, per_user.parquet, leaderboard.csv, ndcg_at_k.png")
    return 0


def _audit(args: argparse.Namespace) -> int:
    from recsys.data.registry import load
    from recsys.diagnostics.audit import run_audit

    record = run_audit(load(args.dataset), args.output, encoder=args.encoder, max_epochs=args.epochs, seed=args.seed,
                       progress=not args.no_progress)  # fmt: skip
    print(f"{record['dataset']}: {record['verdict']}")
    print(f"wrote {args.output}/: report.md, audit.json, models.png, smoothness.png, history.png")
    return 0


def _prune(args: argparse.Namespace) -> int:
    from recsys.pruning.job import prune, read_pruning_run

    run = read_pruning_run(args.config, ratio=args.ratio, method=args.method, seed=args.seed)
    record = prune(run, args.output, progress=not args.no_progress)
    cost = "from the cache" if record["scores_cached"] else f"computed in {record['timings']['score_s']:.0f} s"
    print(f"{record['method']}: {record['budget']} of {record['samples']} samples ({record['ratio']:.2%}); scores {cost}")
    print(f"wrote {args.output}/: selection.parquet, scores.parquet, prune.json, report.md, scores.png, bins.png")
    overrides = " ".join(run.finetune_overrides(selection=args.output / "selection.parquet"))
    print(f"fine-tune on it: recsys fit --config {run.finetune} {overrides}")
    return 0


def _read_table(path: Path, columns: dict[str, str]):
    """A Parquet/CSV table's ``columns`` (``{its name: user | item | score}``), checked and renamed to recsys' names;
    a missing file or column, an unreadable file or a score that is not a number is a `DataError` naming it."""
    import polars as pl

    from recsys.data.validation import DataError, require_columns

    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        frame = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path)
    except (pl.exceptions.PolarsError, OSError) as err:
        raise DataError(f"{path}: not a readable {'Parquet' if path.suffix == '.parquet' else 'CSV'} file: "
                        f"{str(err).splitlines()[0]}") from err  # fmt: skip
    try:
        require_columns(frame, list(columns), str(path))
    except DataError as err:
        raise DataError(f"{err} Name the columns with --user-col, --item-col, --score-col.") from err
    own = {ours: theirs for theirs, ours in columns.items()}
    if "score" in own and not frame[own["score"]].dtype.is_numeric():
        raise DataError(f"{path}: the score column {own['score']!r} holds {frame[own['score']].dtype}, not numbers")
    return frame.select(list(columns)).rename(columns)


def _evaluate(args: argparse.Namespace) -> int:
    from recsys.evaluation.evaluator import evaluate

    pairs = {args.user_col: "user", args.item_col: "item"}
    ev = evaluate(
        _read_table(args.run, {**pairs, args.score_col: "score"}), _read_table(args.test, pairs),
        exclude=[_read_table(p, pairs) for p in args.exclude], k=args.k,
    )  # fmt: skip
    print(json.dumps(ev.summary, indent=2))
    if args.output:
        args.output.mkdir(parents=True, exist_ok=True)
        (args.output / "summary.json").write_text(json.dumps(ev.summary, indent=2))
        ev.per_user.write_parquet(args.output / "per_user.parquet")
    return 0


def _tune(args: argparse.Namespace) -> int:
    import warnings

    import optuna

    from recsys.resources import config_path
    from recsys.tuning.spec import SpecError, load_spec

    if args.threads is not None:  # trials and --show's retrains
        _pin_threads(args.threads, "--threads")
    warnings.filterwarnings("ignore", module="lightning")  # per-trial Lightning notices would bury the progress
    optuna.logging.set_verbosity(optuna.logging.INFO)  # one line per finished or pruned trial
    name = args.study_name or args.config.stem
    try:
        spec = load_spec(config_path(args.config))
        if args.show:
            from recsys.tuning.report import write_report

            output = args.output or Path("results/tune") / name
            write_report(spec, args.storage, name, output, seeds=args.seeds, retrain=not args.no_retrain)
            return 0
        from recsys.tuning.report import summary
        from recsys.tuning.study import run_study
        study = run_study(spec, storage=args.storage, name=name, n_trials=args.n_trials, n_jobs=args.n_jobs)
    except SpecError as err:
        print(f"recsys: error: {err}", file=sys.stderr)
        return 2
    print(summary(study))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
