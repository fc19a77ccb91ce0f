"""Worker that trains ``imitation``'s preference-based reward model; runs INSIDE the peer venv.

Usage: ``python _imitation_worker.py IN.npz OUT.npz [LOG_DIR]``

Started by ``benchmarks/peer_imitation.py`` (see there for the array layout).  It must not
import symreward: it runs in a separate virtual environment with ``imitation==1.0.1``,
``gymnasium~=0.29`` and ``stable-baselines3~=2.2.1``.

What it runs is what a user of ``imitation`` would run offline on a fixed set of
preferences: ``BasicRewardNet`` (state, action and next state; default MLP of 32-32 ReLU)
inside a ``PreferenceModel`` (Bradley–Terry over segment returns), trained by
``BasicRewardTrainer`` with ``CrossEntropyRewardLoss`` (AdamW) on a ``PreferenceDataset``.

Each segment ``[start, stop)`` becomes a ``TrajectoryWithRew`` whose ``obs`` has T+1 rows
(``observations[start:stop]`` plus ``next_observations[stop - 1]``).  ``imitation`` derives a
fragment's next observations from ``obs[1:]``, so inside a segment ``next_observations[t]``
is taken to equal ``observations[t + 1]``; the number of transitions where that does not
hold is reported (``n_next_obs_mismatch``).  The true rewards are not given to the peer:
``rews`` are zeros (``imitation`` only uses them for a ground-truth metric, never for the
loss).

The trained net's weights go back too (``net_weight_<k>``/``net_bias_<k>``, float32, the
``Linear`` layers in order, ReLU between them), so that the caller can evaluate the same MLP
outside this venv, e.g. as a training reward (``peer_imitation.RewardMLP``).
"""

from __future__ import annotations

import os
import sys
import time

# One thread: on this 2-core machine two threads were ~15x slower for these tiny MLPs.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np


def _as_2d(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return x.reshape(len(x), -1) if x.ndim == 1 else x


def _check_segments(name: str, seg: np.ndarray, n: int) -> None:
    if seg.ndim != 2 or seg.shape[1] != 2:
        raise ValueError(f"{name} must have shape (P, 2), got {seg.shape}")
    if np.any(seg[:, 0] < 0) or np.any(seg[:, 1] > n) or np.any(seg[:, 1] <= seg[:, 0]):
        raise ValueError(f"{name} holds an empty or out-of-range [start, stop) segment")


def mlp_weights(mlp) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ``(weight, bias)`` of each ``Linear`` layer of ``BasicRewardNet.mlp``, in order,
    after checking that the net is exactly what ``RewardMLP`` evaluates: ``Linear`` layers
    with a ReLU after every one but the last, then the squeeze (no input normalisation, no
    dropout); anything else raises."""
    from torch import nn

    layers = list(mlp.children())
    if not layers or type(layers[-1]).__name__ != "SqueezeLayer":
        raise ValueError("the reward MLP does not end with imitation's SqueezeLayer")
    layers = layers[:-1]
    expected = [nn.Linear if k % 2 == 0 else nn.ReLU for k in range(len(layers))]
    if len(layers) % 2 != 1 or [type(layer) for layer in layers] != expected:
        names = ", ".join(type(layer).__name__ for layer in layers)
        raise ValueError(f"the reward MLP is not Linear/ReLU alternating: {names}")
    return [(layer.weight.detach().numpy().copy(), layer.bias.detach().numpy().copy())
            for layer in layers[::2]]


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    in_path, out_path = argv[0], argv[1]
    log_dir = argv[2] if len(argv) == 3 else None

    import random

    import torch as th
    from gymnasium import spaces
    from imitation.algorithms import preference_comparisons as pc
    from imitation.data.types import TrajectoryWithRew
    from imitation.rewards.reward_nets import BasicRewardNet
    from imitation.util import logger as imit_logger

    th.set_num_threads(1)

    with np.load(in_path, allow_pickle=False) as data:
        d = {k: data[k] for k in data.files}

    obs = _as_2d(d["observations"]).astype(np.float32)
    next_obs = _as_2d(d["next_observations"]).astype(np.float32)
    eval_obs = _as_2d(d["eval_obs"]).astype(np.float32)
    eval_next_obs = _as_2d(d["eval_next_obs"]).astype(np.float32)
    acts_raw, eval_acts_raw = np.asarray(d["actions"]), np.asarray(d["eval_act"])
    discrete = bool(d["discrete_actions"])
    pref_a = np.asarray(d["pref_a"], dtype=np.int64)
    pref_b = np.asarray(d["pref_b"], dtype=np.int64)
    labels = np.asarray(d["pref_label"], dtype=np.float32)
    epochs = int(d["epochs"])
    seed = int(d["seed"])
    discount = float(d["discount"])
    lr = float(d["lr"])
    batch_size = int(d["batch_size"])

    n = len(obs)
    if not (len(next_obs) == len(acts_raw) == n):
        raise ValueError("observations, actions and next_observations differ in length")
    _check_segments("pref_a", pref_a, n)
    _check_segments("pref_b", pref_b, n)
    if not (len(pref_a) == len(pref_b) == len(labels)):
        raise ValueError("pref_a, pref_b and pref_label differ in length")
    if np.any((labels < 0) | (labels > 1)):
        raise ValueError("pref_label must lie in [0, 1]")
    len_a, len_b = pref_a[:, 1] - pref_a[:, 0], pref_b[:, 1] - pref_b[:, 0]
    if np.any(len_a != len_b):
        # PreferenceModel.probability computes (rews2 - rews1).sum(): it needs equal lengths.
        raise ValueError("imitation's PreferenceModel needs both segments of a pair equally long")

    obs_space = spaces.Box(-np.inf, np.inf, shape=obs.shape[1:], dtype=np.float32)
    if discrete:
        n_actions = int(max(acts_raw.max(), eval_acts_raw.max())) + 1
        act_space: spaces.Space = spaces.Discrete(n_actions)
        acts = acts_raw.astype(np.int64).reshape(-1)
        eval_acts = eval_acts_raw.astype(np.int64).reshape(-1)
    else:
        acts = _as_2d(acts_raw).astype(np.float32)
        eval_acts = _as_2d(eval_acts_raw).astype(np.float32)
        act_space = spaces.Box(-np.inf, np.inf, shape=acts.shape[1:], dtype=np.float32)

    random.seed(seed)
    np.random.seed(seed)
    th.manual_seed(seed)
    rng = np.random.default_rng(seed)

    custom_logger = imit_logger.configure(folder=log_dir, format_strs=[])

    # --- training (timed: everything after imports and data loading, before evaluation) ---
    t0 = time.perf_counter()
    inside = np.zeros(n, dtype=bool)  # transitions t whose t+1 is in the same segment

    def fragment(start: int, stop: int) -> TrajectoryWithRew:
        inside[start : stop - 1] = True
        return TrajectoryWithRew(
            obs=np.concatenate([obs[start:stop], next_obs[stop - 1 : stop]]),
            acts=acts[start:stop],
            infos=None,
            terminal=False,
            rews=np.zeros(stop - start, dtype=np.float32),
        )

    pairs = [
        (fragment(int(a0), int(a1)), fragment(int(b0), int(b1)))
        for (a0, a1), (b0, b1) in zip(pref_a, pref_b, strict=True)
    ]
    dataset = pc.PreferenceDataset()
    dataset.push(pairs, labels)

    reward_net = BasicRewardNet(
        obs_space,
        act_space,
        use_state=True,
        use_action=True,
        use_next_state=True,
        use_done=False,
    )
    preference_model = pc.PreferenceModel(reward_net, discount_factor=discount)
    trainer = pc.BasicRewardTrainer(
        preference_model,
        pc.CrossEntropyRewardLoss(),
        rng=rng,
        batch_size=batch_size,
        epochs=epochs,
        lr=lr,
        custom_logger=custom_logger,
    )
    trainer.train(dataset)
    train_seconds = time.perf_counter() - t0

    # --- diagnostics and evaluation ---
    idx = np.flatnonzero(inside)
    mismatch = int(np.sum(np.any(next_obs[idx] != obs[idx + 1], axis=1))) if len(idx) else 0

    # Per-epoch mean training loss as logged by BasicRewardTrainer.
    history = np.full(epochs, np.nan)
    for key, value in custom_logger.name_to_value.items():
        prefix, _, rest = key.partition("reward/epoch-")
        if prefix.startswith("mean/") and rest.endswith("/train/loss"):
            ep = int(rest.split("/", 1)[0])
            if 0 <= ep < epochs:
                history[ep] = float(value)

    reward_net.eval()
    losses, accs = [], []
    with th.no_grad():
        for i in range(0, len(dataset), 256):
            (f1, f2), prefs = dataset[i : i + 256]
            batch = list(zip(f1, f2, strict=True))
            out = pc.CrossEntropyRewardLoss()(batch, prefs, preference_model)
            losses.append(float(out.loss) * len(prefs))
            accs.append(float(out.metrics["accuracy"]) * len(prefs))
    final_loss = sum(losses) / len(dataset)
    final_accuracy = sum(accs) / len(dataset)

    eval_rewards = reward_net.predict(
        eval_obs, eval_acts, eval_next_obs, np.zeros(len(eval_obs), dtype=bool)
    ).astype(np.float64)

    import imitation

    weights = {}
    for k, (weight, bias) in enumerate(mlp_weights(reward_net.mlp)):
        weights[f"net_weight_{k}"], weights[f"net_bias_{k}"] = weight, bias

    np.savez(
        out_path,
        **weights,
        eval_rewards=eval_rewards,
        train_seconds=np.float64(train_seconds),
        epochs=np.int64(epochs),
        final_loss=np.float64(final_loss),
        final_accuracy=np.float64(final_accuracy),
        loss_history=history,
        n_next_obs_mismatch=np.int64(mismatch),
        versions=np.str_(f"imitation {imitation.__version__}, torch {th.__version__}"),
    )
    if mismatch:
        print(
            f"warning: {mismatch} transitions inside segments have next_observations[t] != "
            "observations[t+1]; imitation used observations[t+1]",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
