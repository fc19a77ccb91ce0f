"""Make the odometer example's data: a rover on a 10 m track, logged with its odometer.

Deterministic for a seed. ``python make_data.py OUT.npz [--seed N]`` writes the transitions,
the labellers' preference pairs, and the reward the person wants as the ``rewards`` key (for
measuring, not learning: the preferences objective does not read it).
"""

from __future__ import annotations

import argparse

import numpy as np

from symreward.data import Dataset, bradley_terry_preferences, save_dataset

TRACK = 10.0          # metres
EPISODES, STEPS = 40, 50
READOUT_NOISE = 0.1   # metres: the odometer jitters around the true position
TENSION = 0.1         # the tether's strain per metre squared


def roll_out(seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    obs, next_obs, actions = [], [], []
    for _ in range(EPISODES):
        position = rng.uniform(0.0, TRACK)
        for _ in range(STEPS):
            speed = rng.uniform(-1.0, 1.0)
            after = float(np.clip(position + speed, 0.0, TRACK))
            readout = after + rng.normal(0.0, READOUT_NOISE)
            obs.append([position, position])
            next_obs.append([after, readout])
            actions.append([speed])
            position = after
    n = EPISODES * STEPS
    timeouts = np.zeros(n, bool)
    timeouts[STEPS - 1::STEPS] = True
    return Dataset(observations=np.array(obs), actions=np.array(actions),
                   next_observations=np.array(next_obs), terminals=np.zeros(n, bool),
                   timeouts=timeouts)


def labellers(data: Dataset) -> np.ndarray:
    """What the labellers reward: progress as the readout shows it, less the tether's strain,
    which they see grow with the rover's real distance."""
    position, readout = data.next_observations[:, 0], data.next_observations[:, 1]
    return readout - TENSION * position**2


def truth(data: Dataset) -> np.ndarray:
    """What the person wants: progress where the rover really is, less the strain."""
    position = data.next_observations[:, 0]
    return position - TENSION * position**2


def make(seed: int, pairs: int = 400) -> Dataset:
    data = roll_out(seed)
    preferences = bradley_terry_preferences(data, labellers(data), pairs, 25,
                                            seed=seed + 1)
    return data.replace(preferences=preferences, rewards=truth(data))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    save_dataset(make(args.seed), args.out)


if __name__ == "__main__":
    main()
