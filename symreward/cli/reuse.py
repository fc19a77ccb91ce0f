"""Commands that put a reward to use: eval, relabel, export."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from symreward.cli.output import EXIT_OK, check_output


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    evaluate = commands.add_parser("eval", parents=[common],
                                   help="per-transition rewards of a dataset, as a .npy file")
    evaluate.add_argument("artifact", type=Path)
    evaluate.add_argument("data", type=Path)
    evaluate.add_argument("-o", "--output", type=Path, required=True,
                          help="where to write the float64 rewards (.npy)")
    evaluate.set_defaults(run=_eval)
    relabelling = commands.add_parser(
        "relabel", parents=[common],
        help="copy an offline RL dataset with the artifact's rewards (npz, HDF5, Minari); the "
             "old rewards are kept as original_rewards")
    relabelling.add_argument("artifact", type=Path)
    relabelling.add_argument("data", help="an .npz, .h5/.hdf5, Minari directory or minari:ID")
    relabelling.add_argument("-o", "--output", required=True,
                             help="a file of the input's kind, or minari:NEW_ID for Minari")
    relabelling.set_defaults(run=_relabel)
    export = commands.add_parser("export", parents=[common],
                                 help="the reward as standalone code (numpy, pure Python, C) "
                                      "or LaTeX, with no symreward import")
    export.add_argument("artifact", type=Path)
    export.add_argument("--to", required=True, choices=_export_formats())
    export.add_argument("-o", "--output", type=Path,
                        help="write the code here (default: print it)")
    export.set_defaults(run=_export)


def _eval(args: argparse.Namespace) -> int:
    from symreward.artifact import RewardArtifact
    from symreward.atomic import save_npy
    from symreward.data import load_dataset

    artifact = RewardArtifact.load(args.artifact)
    dataset = load_dataset(args.data)
    rewards = artifact.evaluate(dataset).rewards
    save_npy(args.output, rewards.astype(np.float64))
    finite = rewards[np.isfinite(rewards)]
    non_finite = rewards.size - finite.size
    print(f"wrote {args.output}: {rewards.size} rewards")
    if finite.size:
        print(f"  mean {finite.mean():.6g}  min {finite.min():.6g}  max {finite.max():.6g}"
              + ("  (over finite values)" if non_finite else ""))
    print(f"  non-finite: {non_finite}" + (
        f"  (NaN {int(np.isnan(rewards).sum())}, inf {int(np.isinf(rewards).sum())}; first at "
        f"row {int(np.flatnonzero(~np.isfinite(rewards))[0])})" if non_finite else ""))
    return EXIT_OK


def _relabel(args: argparse.Namespace) -> int:
    from symreward.data.relabel import relabel

    result = relabel(args.artifact, args.data, args.output)
    print(f"wrote {result.output}: {result.rows} rewards from {args.artifact}")
    print(f"  mean {result.mean:.6g}  min {result.minimum:.6g}  max {result.maximum:.6g}")
    print(f"  old rewards: {result.original_rewards}")
    print(f"  artifact hash: {result.artifact_hash}")
    return EXIT_OK


def _export_formats() -> tuple[str, ...]:
    from symreward.export import FORMATS

    return FORMATS


def _export(args: argparse.Namespace) -> int:
    from symreward.artifact import RewardArtifact
    from symreward.atomic import atomic_write_text
    from symreward.export import export

    check_output("-o", args.output, "the exported code")
    artifact = RewardArtifact.load(args.artifact)
    text = export(artifact, args.to)
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    atomic_write_text(args.output, text)
    print(f"wrote {args.output}: {args.to} code of {artifact.name or 'the reward'} "
          f"({len(artifact.terms)} terms, content hash {artifact.content_hash()})")
    return EXIT_OK
