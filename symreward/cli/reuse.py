"""Commands that put a reward to use: eval, relabel, export."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from symreward.cli.output import EXIT_OK, add_scheduler_option, check_output


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    evaluate = commands.add_parser("eval", parents=[common],
                                   help="per-transition rewards of a dataset, as a .npy file")
    evaluate.add_argument("artifact", type=Path)
    evaluate.add_argument("data", help="a dataset file, Minari dataset, or a folder or glob of "
                                       "shards")
    evaluate.add_argument("-o", "--output", type=Path, required=True,
                          help="where to write the float64 rewards (.npy)")
    add_scheduler_option(evaluate)
    evaluate.set_defaults(run=_eval)
    relabelling = commands.add_parser(
        "relabel", parents=[common],
        help="copy an offline RL dataset with the artifact's rewards (npz, HDF5, Minari); the "
             "old rewards are kept as original_rewards")
    relabelling.add_argument("artifact", type=Path)
    relabelling.add_argument("data", help="an .npz, .h5/.hdf5, Minari directory or minari:ID, "
                                          "or a folder or glob of shards")
    relabelling.add_argument("-o", "--output", required=True,
                             help="a file of the input's kind, minari:NEW_ID for Minari, or a "
                                  "new folder for shards (one relabelled shard per shard)")
    add_scheduler_option(relabelling)
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
    from symreward.blocks import lazy_rewards, save_rewards, summarize
    from symreward.data import Dataset, load_dataset
    from symreward.schedulers import scheduler

    check_output("-o", args.output, "the rewards")
    artifact = RewardArtifact.load(args.artifact)
    with scheduler(args.scheduler):
        # A scheduler asks for dask: the data is read lazily even where it would fit.
        dataset = (load_dataset(args.data) if args.scheduler is None
                   else load_dataset(args.data, lazy=True))
        if isinstance(dataset, Dataset):
            rewards = artifact.evaluate(dataset).rewards
            save_npy(args.output, rewards.astype(np.float64))
            summary = summarize([rewards])
        else:  # lazy: the rewards go to the file block by block
            summary = save_rewards(lazy_rewards(artifact, dataset), args.output)
    print(f"wrote {args.output}: {summary.rows} rewards")
    if summary.finite:
        print(f"  mean {summary.mean:.6g}  min {summary.minimum:.6g}  max {summary.maximum:.6g}"
              + ("  (over finite values)" if summary.non_finite else ""))
    print(f"  non-finite: {summary.non_finite}" + (
        f"  (NaN {summary.nan}, inf {summary.inf}; first at row {summary.first_non_finite})"
        if summary.non_finite else ""))
    return EXIT_OK


def _relabel(args: argparse.Namespace) -> int:
    from symreward.data.relabel import relabel
    from symreward.data.relabel_shards import relabel_shards
    from symreward.data.shards import is_sharded
    from symreward.schedulers import scheduler

    with scheduler(args.scheduler):
        if is_sharded(args.data):
            result = relabel_shards(args.artifact, args.data, args.output)
            print(f"wrote {result.output}: {len(result.shards)} shards, {result.rows} rewards "
                  f"from {args.artifact}")
            kept = sorted({shard.original_rewards for shard in result.shards})
        else:
            result = relabel(args.artifact, args.data, args.output)
            print(f"wrote {result.output}: {result.rows} rewards from {args.artifact}")
            kept = [result.original_rewards]
    print(f"  mean {result.mean:.6g}  min {result.minimum:.6g}  max {result.maximum:.6g}")
    print(f"  old rewards: {kept[0]}" if len(kept) == 1 else
          "  old rewards, by shard: " + "; ".join(kept))
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
