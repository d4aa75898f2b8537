"""Study specs: a typed description of an Optuna study read from YAML (``experiments/<dataset>/tune-*.yaml``).

A spec names what to tune — a Lightning experiment config (the YAML ``recsys fit --config`` takes) or a
non-Lightning `Recommender` by class path — the validation metric to optimise, a search space, the sampler, the
pruner and the trial budget::

    lightning: experiments/ml-100k/mf-bpr.yaml      # or: recommender: {class_path: ..., init_args: {...}}
    metric: ndcg@10                                  # validation metric (default ndcg@10), maximised
    overrides: {trainer.max_epochs: 100}             # fixed changes to the base config, for every trial
    space:
      model.init_args.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      model.init_args.model.init_args.embedding_dim: {type: categorical, choices: [16, 32, 64, 128]}
      sgd_lr: {key: model.init_args.lr, type: float, low: 0.01, high: 1.0, log: true,
               when: {model.init_args.optimizer: sgd}}   # conditional: sampled only when the condition holds
    sampler: {name: tpe, seed: 2026}                 # tpe (default) | random, plus the sampler's own options
    pruner: {name: median, n_warmup_steps: 5}        # median (default) | hyperband | percentile | none
    n_trials: 30

Space entries are named by the config key they set (dotted through the YAML, e.g.
``model.init_args.model.init_args.embedding_dim``; for a recommender, its constructor argument) unless ``key``
says otherwise, so two conditional entries can set the same key from different ranges. Parameter names are
checked against the config or constructor before any trial runs (`recsys.tuning.objective.validate`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from recsys import resources

ParamType = Literal["float", "int", "categorical"]
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "hyperband", "percentile", "none")
SPEC_KEYS = {"lightning", "recommender", "data", "metric", "direction", "overrides", "space", "sampler", "pruner",
             "n_trials", "seed", "eval_k"}  # fmt: skip


class SpecError(ValueError):
    """A study spec that cannot run; the message names the file and the offending key."""


@dataclass(frozen=True)
class Param:
    """One search-space entry: an Optuna distribution for the config key ``key``.

    Attributes:
        name: the Optuna parameter name (the YAML key of the entry).
        key: dotted config key (Lightning) or constructor argument (recommender) the sampled value sets.
        type: ``float``, ``int`` or ``categorical``.
        low, high, log, step: the range of ``float``/``int`` parameters.
        choices: the values of a ``categorical`` parameter (lists allowed, e.g. hidden-layer sizes).
        when: condition ``{other parameter name: value or [values]}``; the entry is sampled only when every
            named parameter was sampled with one of the values.
    """

    name: str
    key: str
    type: ParamType
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    when: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def example(self) -> Any:
        """A value in the range (checks that the key accepts this kind of value)."""
        if self.type == "categorical":
            return self.choices[0]
        return int(self.low) if self.type == "int" else float(self.low)  # type: ignore[arg-type]

    def active(self, sampled: dict[str, Any]) -> bool:
        """Whether the condition holds for the values sampled so far (by parameter name)."""
        return all(name in sampled and sampled[name] in values for name, values in self.when.items())

    def suggest(self, trial: Any) -> Any:
        """Sample from ``trial`` (an `optuna.Trial`). Non-scalar choices are sampled by their JSON text."""
        if self.type == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            step = int(self.step) if self.step else 1
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log, step=step)  # type: ignore[arg-type]
        if self.scalar_choices:
            return trial.suggest_categorical(self.name, list(self.choices))
        # Optuna stores only scalars: lists (e.g. hidden sizes) are sampled as their JSON text.
        return self.decode(trial.suggest_categorical(self.name, [json.dumps(c) for c in self.choices]))

    def decode(self, stored: Any) -> Any:
        """The config value of a value Optuna stored for this parameter (JSON text for non-scalar choices)."""
        return stored if self.type != "categorical" or self.scalar_choices else json.loads(stored)

    def encode(self, value: Any) -> Any:
        """The value Optuna stores for a config value: the inverse of `decode`."""
        return value if self.type != "categorical" or self.scalar_choices else json.dumps(value)

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is one this parameter can be sampled as (a choice; a number in range, on the step)."""
        if self.type == "categorical":
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not self.low <= value <= self.high:  # type: ignore[operator]
            return False
        step = self.step or (1 if self.type == "int" else None)
        return step is None or abs((value - self.low) / step - round((value - self.low) / step)) < 1e-9  # type: ignore[operator]

    @property
    def scalar_choices(self) -> bool:
        return all(isinstance(c, (str, int, float, bool)) or c is None for c in self.choices)


@dataclass(frozen=True)
class StudySpec:
    """A parsed, checked study spec (see the module docstring for the YAML).

    Attributes:
        path: the YAML file (errors name it).
        lightning: base experiment config of a Lightning model, or None.
        base: that config's content, read once when the spec is loaded, so every trial of a run starts from the
            same config even if the file is edited meanwhile.
        recommender: ``{"class_path": ..., "init_args": {...}}`` of a non-Lightning recommender, or None.
        data: ``dataset``, ``protocol``, ``seed`` of a recommender study (Lightning studies use the config's).
        metric: validation metric name as the evaluator reports it (``ndcg@10``).
        direction: ``maximize`` or ``minimize``.
        overrides: fixed dotted-key changes applied to every trial and to the retrained configs.
        space: the search space, in sampling order (conditions refer to earlier entries).
        sampler, pruner: ``{"name": ..., **options}``.
        n_trials: COMPLETE + PRUNED trials the study runs to.
        seed: training seed of every trial (default: the config's ``seed_everything`` / the recommender's).
        eval_k: cut-offs of the test metrics in reports.
    """

    path: Path
    lightning: Path | None
    base: dict[str, Any]
    recommender: dict[str, Any] | None
    data: dict[str, Any]
    metric: str
    direction: Literal["maximize", "minimize"]
    overrides: dict[str, Any]
    space: tuple[Param, ...]
    sampler: dict[str, Any]
    pruner: dict[str, Any]
    n_trials: int
    seed: int | None
    eval_k: tuple[int, ...]

    @property
    def kind(self) -> Literal["lightning", "recommender"]:
        return "lightning" if self.lightning is not None else "recommender"


def load_spec(path: str | Path) -> StudySpec:
    """Read and check a study spec YAML; relative config paths resolve against the working directory, then the
    spec's folder, then the shipped experiments (`recsys.resources.config_path`)."""
    path = Path(path)
    if not path.exists():
        raise SpecError(f"{path}: study spec not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:  # e.g. a !!python tag, which safe loading refuses
        raise SpecError(f"{path}: not a plain YAML study spec: {str(err).splitlines()[0]}") from err
    if not isinstance(raw, dict) or not raw:
        raise SpecError(f"{path}: a study spec is a YAML mapping, got {'an empty file' if raw is None else type(raw).__name__}")
    return parse_spec(raw, path)


def parse_spec(raw: dict[str, Any], path: Path = Path("<spec>")) -> StudySpec:
    """Check a spec mapping (the YAML's content) and build a `StudySpec`."""
    unknown = set(raw) - SPEC_KEYS
    if unknown:
        raise SpecError(f"{path}: unknown key(s) {sorted(unknown)}; allowed: {sorted(SPEC_KEYS)}")
    if ("lightning" in raw) == ("recommender" in raw):
        raise SpecError(f"{path}: give exactly one of 'lightning' (a recsys fit config) or 'recommender'")
    lightning = _config_path(raw["lightning"], path) if "lightning" in raw else None
    recommender = raw.get("recommender")
    if recommender is not None:
        if not isinstance(recommender, dict) or "class_path" not in recommender:
            raise SpecError(f"{path}: 'recommender' needs a class_path (and optional init_args)")
        extra = set(recommender) - {"class_path", "init_args"}
        if extra:
            raise SpecError(f"{path}: recommender: unknown key(s) {sorted(extra)}; allowed: class_path, init_args")
        recommender = {"class_path": recommender["class_path"], "init_args": dict(recommender.get("init_args") or {})}
    data = {"dataset": "ml-100k", "protocol": "user-811", "seed": 2026, **(raw.get("data") or {})}
    if lightning is not None and "data" in raw:
        raise SpecError(f"{path}: 'data' is for recommender studies; a Lightning study uses its config's data")
    if set(data) - {"dataset", "protocol", "seed"}:
        raise SpecError(f"{path}: data: unknown key(s) {sorted(set(data) - {'dataset', 'protocol', 'seed'})}")
    direction = raw.get("direction", "maximize")
    if direction not in ("maximize", "minimize"):
        raise SpecError(f"{path}: direction must be 'maximize' or 'minimize', got {direction!r}")
    n_trials = raw.get("n_trials", 30)
    if not isinstance(n_trials, int) or n_trials < 1:
        raise SpecError(f"{path}: n_trials must be a positive integer, got {n_trials!r}")
    return StudySpec(
        path=path,
        lightning=lightning,
        base=(yaml.safe_load(lightning.read_text()) or {}) if lightning is not None else {},
        recommender=recommender,
        data=data,
        metric=str(raw.get("metric", "ndcg@10")),
        direction=direction,
        overrides=dict(raw.get("overrides") or {}),
        space=parse_space(raw.get("space"), path),
        sampler=_named(raw.get("sampler"), "tpe", SAMPLERS, "sampler", path),
        pruner=_named(raw.get("pruner"), "median", PRUNERS, "pruner", path),
        n_trials=n_trials,
        seed=raw.get("seed"),
        eval_k=tuple(int(k) for k in raw.get("eval_k", (1, 5, 10, 20, 50))),
    )


def parse_space(raw: Any, path: Path) -> tuple[Param, ...]:
    """The search space: a mapping of parameter name to ``{type, low, high, log, step, choices, key, when}``."""
    if not raw:
        raise SpecError(f"{path}: the search space is empty; add parameters under 'space'")
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: 'space' must map parameter names to distributions")
    params: list[Param] = []
    for name, entry in raw.items():
        params.append(_param(str(name), entry, path, {p.name for p in params}))
    return tuple(params)


def _param(name: str, entry: Any, path: Path, earlier: set[str]) -> Param:
    where = f"{path}: space.{name}"
    if not isinstance(entry, dict):
        raise SpecError(f"{where}: expected a mapping with 'type', got {entry!r}")
    allowed = {"type", "low", "high", "log", "step", "choices", "key", "when"}
    if set(entry) - allowed:
        raise SpecError(f"{where}: unknown key(s) {sorted(set(entry) - allowed)}; allowed: {sorted(allowed)}")
    kind = entry.get("type")
    when = {}
    for other, values in (entry.get("when") or {}).items():
        if other not in earlier:
            raise SpecError(f"{where}: condition on {other!r}, which is not an earlier parameter of the space")
        when[other] = tuple(values) if isinstance(values, list) else (values,)
    common = {"name": name, "key": str(entry.get("key", name)), "when": when}
    if kind == "categorical":
        choices = entry.get("choices")
        if not isinstance(choices, list) or not choices:
            raise SpecError(f"{where}: a categorical parameter needs a non-empty 'choices' list")
        return Param(type="categorical", choices=tuple(choices), **common)
    if kind not in ("float", "int"):
        raise SpecError(f"{where}: type must be float, int or categorical, got {kind!r}")
    try:
        low, high = float(entry["low"]), float(entry["high"])
    except (KeyError, TypeError, ValueError) as err:
        raise SpecError(f"{where}: a {kind} parameter needs numeric 'low' and 'high'") from err
    log, step = bool(entry.get("log", False)), entry.get("step")
    if low > high:
        raise SpecError(f"{where}: low {low} is above high {high}")
    if log and (low <= 0 or step is not None):
        raise SpecError(f"{where}: a log-scale range needs low > 0 and no step")
    return Param(type=kind, low=low, high=high, log=log, step=None if step is None else float(step), **common)


def _named(raw: Any, default: str, names: tuple[str, ...], what: str, path: Path) -> dict[str, Any]:
    options = {"name": default} if raw is None else ({"name": raw} if isinstance(raw, str) else dict(raw))
    options.setdefault("name", default)
    if options["name"] not in names:
        raise SpecError(f"{path}: unknown {what} {options['name']!r}; choose one of {list(names)}")
    return options


def _config_path(value: Any, spec: Path) -> Path:
    candidates = list(dict.fromkeys([Path(str(value)), spec.parent / str(value), resources.config_path(str(value))]))
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise SpecError(f"{spec}: base config {value!r} not found (looked in {[str(c) for c in candidates]})")


def get_dotted(config: dict[str, Any], key: str) -> Any:
    """``config[a][b][c]`` for ``key = "a.b.c"`` (an integer part indexes a list, as in `set_dotted`); KeyError when
    a level is missing."""
    node: Any = config
    for part in key.split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise KeyError(key)
    return node


def set_dotted(config: dict[str, Any], key: str, value: Any, what: str = "config") -> None:
    """Set ``config[a][b][c] = value`` for ``key = "a.b.c"`` (an integer part indexes a list, e.g.
    ``trainer.callbacks.0.init_args.patience``); missing mapping levels are created, and the typed constructors
    behind the config decide whether a new key is valid."""
    parts = key.split(".")
    node: Any = config
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            if last:
                node[int(part)] = value
            node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            elif node.get(part) is None:
                node[part] = {}
            node = node[part]
        else:
            raise SpecError(f"{what}: key {key!r}: {'.'.join(parts[:depth]) or 'the config'!r} has no entry {part!r}")
