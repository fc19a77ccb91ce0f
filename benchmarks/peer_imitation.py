"""Neural peer for the recovery benchmark: ``imitation``'s preference-based reward learning.

The peer is what a user would reach for today to learn a reward offline from segment
preferences: ``imitation``'s ``BasicRewardNet`` + ``PreferenceModel`` +
``CrossEntropyRewardLoss``, trained by ``BasicRewardTrainer`` on the very same preferences
that symreward sees.

``imitation`` 1.0.1 pins ``gymnasium~=0.29`` and ``stable-baselines3~=2.2.1``, which clash
with symreward's own environment, so the peer lives in a virtual environment of its own
(default ``benchmarks/.peer-venv``, overridable with ``SYMREWARD_PEER_VENV``).  This module
runs in symreward's environment, creates that venv on demand (:func:`ensure_peer_venv`) and
runs ``benchmarks/_imitation_worker.py`` inside it as a subprocess (:func:`train_peer`).
Arrays travel both ways as ``.npz`` files (loaded with ``allow_pickle=False``).

Run ``python benchmarks/peer_imitation.py`` for an end-to-end smoke run on synthetic data.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_imitation_worker.py"
DEFAULT_VENV = HERE / ".peer-venv"
VENV_ENV_VAR = "SYMREWARD_PEER_VENV"

# Installed in this order: the CPU torch first (a wheel on this machine's disk; an unpinned
# torch would pull a multi-GB CUDA build), then imitation with torch already satisfied.
TORCH_REQUIREMENT = "torch==2.13.0"
PEER_REQUIREMENTS = ("imitation==1.0.1",)
# Bumping this invalidates existing venvs (the marker records it).
VENV_SPEC = {"torch": TORCH_REQUIREMENT, "peer": list(PEER_REQUIREMENTS), "version": 1}
MARKER_NAME = "symreward-peer-ready.json"

DEFAULT_EPOCHS = 50
DEFAULT_LR = 1e-3
DEFAULT_BATCH_SIZE = 32


@dataclass(frozen=True)
class RewardMLP:
    """The peer's trained ``BasicRewardNet`` evaluated in numpy, outside the peer venv.

    The net reads the flattened state, action and next state, concatenated in that order,
    as float32 (imitation's preprocessing of ``Box`` spaces), through ``Linear`` layers with a
    ReLU after every one but the last (the worker checks that the net is exactly this).
    Computed in float32 as torch does; the summation order of the matrix products may differ
    from torch's, so values agree with the worker's to float32 rounding, not to the bit.
    """

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> RewardMLP:
        """From ``net_weight_<k>``/``net_bias_<k>`` arrays (the worker's output, or
        :meth:`save`'s file)."""
        count = sum(1 for key in arrays if key.startswith("net_weight_"))
        if count == 0:
            raise ValueError("no net_weight_<k> arrays: not a reward MLP")
        weights = tuple(np.asarray(arrays[f"net_weight_{k}"], np.float32) for k in range(count))
        biases = tuple(np.asarray(arrays[f"net_bias_{k}"], np.float32) for k in range(count))
        for k, (weight, bias) in enumerate(zip(weights, biases, strict=True)):
            fan_in = weights[k - 1].shape[0] if k else weight.shape[1]
            if weight.ndim != 2 or bias.shape != weight.shape[:1] or weight.shape[1] != fan_in:
                raise ValueError(f"layer {k}: weight {weight.shape} and bias {bias.shape} "
                                 "do not chain")
        if weights[-1].shape[0] != 1:
            raise ValueError("the last layer must have one output (the reward)")
        return cls(weights, biases)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RewardMLP:
        with np.load(path, allow_pickle=False) as data:
            return cls.from_arrays({key: data[key] for key in data.files})

    def save(self, path: str | os.PathLike[str]) -> None:
        arrays = {}
        for k, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            arrays[f"net_weight_{k}"], arrays[f"net_bias_{k}"] = weight, bias
        np.savez(path, **arrays)

    @property
    def input_size(self) -> int:
        return int(self.weights[0].shape[1])

    def __call__(self, obs: np.ndarray, act: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        """Rewards of a batch of transitions: ``(N, ...)`` arrays in, ``(N,)`` float64 out."""
        parts = [np.asarray(x, dtype=np.float32) for x in (obs, act, next_obs)]
        parts = [x.reshape(len(x), -1) for x in parts]
        hidden = np.concatenate(parts, axis=1)
        if hidden.shape[1] != self.input_size:
            raise ValueError(f"the net reads {self.input_size} inputs, the transitions give "
                             f"{hidden.shape[1]}")
        last = len(self.weights) - 1
        for k, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            hidden = hidden @ weight.T + bias
            if k < last:
                np.maximum(hidden, 0.0, out=hidden)
        return hidden[:, 0].astype(np.float64)


@dataclass
class PeerResult:
    """What the peer returns: its rewards on the evaluation transitions and its cost."""

    eval_rewards: np.ndarray
    train_seconds: float
    epochs: int
    final_loss: float
    # The trained net, to evaluate on other transitions (e.g. as a training reward).
    net: RewardMLP | None = None
    # Extras beyond the benchmark's needs (diagnostics).
    final_accuracy: float = float("nan")
    loss_history: np.ndarray = field(default_factory=lambda: np.zeros(0))
    n_next_obs_mismatch: int = 0
    versions: str = ""


def _venv_dir(path: str | os.PathLike[str] | None) -> Path:
    if path is None:
        path = os.environ.get(VENV_ENV_VAR) or DEFAULT_VENV
    return Path(path).expanduser().resolve()


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _log(msg: str) -> None:
    print(f"[peer-venv] {msg}", file=sys.stderr, flush=True)


def _run(cmd: list[str]) -> None:
    _log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True)


def ensure_peer_venv(path: str | os.PathLike[str] | None = None) -> Path:
    """Create (once) the peer's virtual environment and return its python executable.

    ``path`` defaults to ``$SYMREWARD_PEER_VENV`` or ``benchmarks/.peer-venv``.  A marker
    file written after a successful install makes later calls return at once; a venv whose
    marker is missing or records another spec (an interrupted install) is reinstalled into.
    """
    venv = _venv_dir(path)
    python = _venv_python(venv)
    marker = venv / MARKER_NAME
    if python.exists() and marker.exists():
        try:
            if json.loads(marker.read_text()).get("spec") == VENV_SPEC:
                return python
        except (OSError, ValueError):
            pass
    t0 = time.perf_counter()
    if not python.exists():
        _log(f"creating virtual environment at {venv}")
        venv.parent.mkdir(parents=True, exist_ok=True)
        # The system python3 on purpose: sys.executable may itself be a venv's interpreter.
        base = "python3" if _which("python3") else sys.executable
        _run([base, "-m", "venv", str(venv)])
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
    _log(f"installing {TORCH_REQUIREMENT} (CPU wheel)")
    _run([*pip, TORCH_REQUIREMENT])
    _log("installing " + " ".join(PEER_REQUIREMENTS) + " (a minute or two)")
    # Repeat the torch pin so that pip's resolver never swaps it for another build.
    _run([*pip, TORCH_REQUIREMENT, *PEER_REQUIREMENTS])
    _run(
        [
            str(python),
            "-c",
            "import imitation, torch; print('imitation', imitation.__version__,"
            " 'torch', torch.__version__)",
        ]
    )
    # Transitive dependencies float: record what this venv resolved to, for the record.
    freeze = subprocess.run(
        [str(python), "-m", "pip", "freeze", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    (venv / "peer-freeze.txt").write_text(freeze)
    seconds = time.perf_counter() - t0
    marker.write_text(json.dumps({"spec": VENV_SPEC, "install_seconds": round(seconds, 1)}))
    _log(f"peer venv ready in {seconds:.0f} s: {python}")
    return python


def _which(name: str) -> str | None:
    from shutil import which

    return which(name)


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    # Nothing of symreward's environment may leak into the peer's interpreter.
    for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"):
        env.pop(var, None)
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        TQDM_DISABLE="1",
        PYTHONNOUSERSITE="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def train_peer(
    observations: np.ndarray,
    actions: np.ndarray,
    next_observations: np.ndarray,
    pref_a: np.ndarray,
    pref_b: np.ndarray,
    pref_label: np.ndarray,
    eval_obs: np.ndarray,
    eval_act: np.ndarray,
    eval_next_obs: np.ndarray,
    *,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    discount: float = 1.0,
    timeout: float = 600,
    lr: float = DEFAULT_LR,
    batch_size: int = DEFAULT_BATCH_SIZE,
    discrete_actions: bool | None = None,
    venv: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
) -> PeerResult:
    """Train ``imitation``'s reward net on the preferences and predict the eval rewards.

    ``pref_a``/``pref_b`` are ``(P, 2)`` ``[start, stop)`` transition indices into the
    arrays; both segments of a pair must be equally long (imitation's ``PreferenceModel``
    subtracts the two reward sequences element-wise).  ``pref_label`` is the probability that
    segment a is preferred.  Within a segment, ``next_observations[t]`` should equal
    ``observations[t + 1]``: imitation rebuilds next observations from the fragment's
    observation sequence (``PeerResult.n_next_obs_mismatch`` counts violations).

    Integer 1-D actions are treated as ``Discrete`` (one-hot) unless ``discrete_actions``
    says otherwise; everything else as a ``Box``.  ``out_dir`` keeps the exchanged ``.npz``
    files and imitation's log folder (default: a temporary folder, removed afterwards).
    ``train_seconds`` is measured inside the worker: building fragments, dataset and net
    plus ``BasicRewardTrainer.train``; imports, file I/O and evaluation are excluded.
    """
    python = ensure_peer_venv(venv)
    actions = np.asarray(actions)
    if discrete_actions is None:
        discrete_actions = actions.ndim == 1 and np.issubdtype(actions.dtype, np.integer)
    arrays = {
        "observations": np.asarray(observations, dtype=np.float64),
        "actions": actions if discrete_actions else actions.astype(np.float64),
        "next_observations": np.asarray(next_observations, dtype=np.float64),
        "pref_a": np.asarray(pref_a, dtype=np.int64).reshape(-1, 2),
        "pref_b": np.asarray(pref_b, dtype=np.int64).reshape(-1, 2),
        "pref_label": np.asarray(pref_label, dtype=np.float64).reshape(-1),
        "eval_obs": np.asarray(eval_obs, dtype=np.float64),
        "eval_act": np.asarray(eval_act),
        "eval_next_obs": np.asarray(eval_next_obs, dtype=np.float64),
        "discrete_actions": np.bool_(discrete_actions),
        "epochs": np.int64(epochs),
        "seed": np.int64(seed),
        "discount": np.float64(discount),
        "lr": np.float64(lr),
        "batch_size": np.int64(batch_size),
    }
    if not discrete_actions:
        arrays["eval_act"] = arrays["eval_act"].astype(np.float64)
    if epochs < 1:
        raise ValueError("epochs must be >= 1")

    with tempfile.TemporaryDirectory(prefix="symreward-peer-") as tmp:
        work = Path(out_dir) if out_dir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        in_path, out_path = work / "peer_in.npz", work / "peer_out.npz"
        out_path.unlink(missing_ok=True)
        np.savez(in_path, **arrays)
        cmd = [str(python), str(WORKER), str(in_path), str(out_path), str(work / "imitation-log")]
        try:
            proc = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=_worker_env(),
                cwd=work,
            )
        except subprocess.TimeoutExpired as exc:
            raise TimeoutError(f"imitation peer did not finish within {timeout} s") from exc
        if proc.returncode != 0 or not out_path.exists():
            tail = "\n".join((proc.stderr or "").strip().splitlines()[-30:])
            raise RuntimeError(f"imitation peer failed (exit {proc.returncode}):\n{tail}")
        if proc.stderr.strip():
            print(proc.stderr.strip(), file=sys.stderr)
        with np.load(out_path, allow_pickle=False) as out:
            res = {k: out[k] for k in out.files}

    return PeerResult(
        eval_rewards=res["eval_rewards"],
        net=RewardMLP.from_arrays(res),
        train_seconds=float(res["train_seconds"]),
        epochs=int(res["epochs"]),
        final_loss=float(res["final_loss"]),
        final_accuracy=float(res["final_accuracy"]),
        loss_history=res["loss_history"],
        n_next_obs_mismatch=int(res["n_next_obs_mismatch"]),
        versions=str(res["versions"]),
    )


# --------------------------------------------------------------------------- smoke run


def _synthetic(n_episodes: int, horizon: int, rng: np.random.Generator):
    """Random-walk episodes in a 2-D box; true reward -obs[0]**2 (state only)."""
    obs, act, nxt = [], [], []
    for _ in range(n_episodes):
        o = rng.uniform(-2, 2, size=2)
        for _ in range(horizon):
            a = rng.uniform(-1, 1, size=2)
            o2 = np.clip(o + 0.3 * a, -2, 2)
            obs.append(o)
            act.append(a)
            nxt.append(o2)
            o = o2
    return np.array(obs), np.array(act), np.array(nxt)


def _true_reward(obs: np.ndarray) -> np.ndarray:
    return -(obs[:, 0] ** 2)


def _synthetic_preferences(
    n_pairs: int, n_episodes: int, horizon: int, seg_len: int, rng: np.random.Generator
):
    starts = rng.integers(0, n_episodes, size=(n_pairs, 2)) * horizon + rng.integers(
        0, horizon - seg_len + 1, size=(n_pairs, 2)
    )
    pref_a = np.stack([starts[:, 0], starts[:, 0] + seg_len], axis=1)
    pref_b = np.stack([starts[:, 1], starts[:, 1] + seg_len], axis=1)
    return pref_a, pref_b


def _smoke(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    ap.add_argument("--lr", type=float, default=DEFAULT_LR)
    ap.add_argument("--seg-len", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--venv", default=None)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    ensure_peer_venv(args.venv)
    print(f"peer venv ready ({time.perf_counter() - t0:.1f} s in this call)")

    rng = np.random.default_rng(args.seed)
    n_episodes, horizon = 100, 50
    obs, act, nxt = _synthetic(n_episodes, horizon, rng)
    rew = _true_reward(obs)
    pref_a, pref_b = _synthetic_preferences(args.pairs, n_episodes, horizon, args.seg_len, rng)
    ret_a = np.array([rew[s:e].sum() for s, e in pref_a])
    ret_b = np.array([rew[s:e].sum() for s, e in pref_b])
    p_a = 1.0 / (1.0 + np.exp(ret_b - ret_a))  # Bradley–Terry
    label = (rng.random(args.pairs) < p_a).astype(np.float64)

    e_obs, e_act, e_nxt = _synthetic(20, horizon, rng)
    t1 = time.perf_counter()
    res = train_peer(
        obs,
        act,
        nxt,
        pref_a,
        pref_b,
        label,
        e_obs,
        e_act,
        e_nxt,
        epochs=args.epochs,
        lr=args.lr,
        seed=args.seed,
        venv=args.venv,
    )
    wall = time.perf_counter() - t1
    corr = float(np.corrcoef(res.eval_rewards, _true_reward(e_obs))[0, 1])
    assert res.net is not None
    gap = float(np.max(np.abs(res.net(e_obs, e_act, e_nxt) - res.eval_rewards)))
    hist = ", ".join(f"{x:.3f}" for x in res.loss_history[:: max(1, args.epochs // 6)])
    print(f"{res.versions}")
    print(f"pairs={args.pairs} seg_len={args.seg_len} epochs={res.epochs} lr={args.lr}")
    print(f"train_seconds={res.train_seconds:.2f} (subprocess wall {wall:.2f} s)")
    q = np.clip(p_a, 1e-12, 1 - 1e-12)
    floor = float(np.mean(-q * np.log(q) - (1 - q) * np.log(1 - q)))
    print(
        f"final_loss={res.final_loss:.4f} final_accuracy={res.final_accuracy:.3f} "
        f"(Bayes floor of the loss, mean Bradley–Terry entropy: {floor:.4f})"
    )
    print(f"loss history (every {max(1, args.epochs // 6)} epochs): {hist}")
    print(f"pearson(predicted, true) on {len(e_obs)} eval transitions: {corr:.4f}")
    print(f"the net evaluated in numpy (RewardMLP) vs the worker's torch: max |diff| {gap:.1e} "
          f"(rewards up to {np.max(np.abs(res.eval_rewards)):.2f})")


if __name__ == "__main__":
    _smoke()
