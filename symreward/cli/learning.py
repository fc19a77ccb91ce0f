"""Commands that learn a reward: learn, demo."""

from __future__ import annotations

import argparse
from pathlib import Path

from symreward.cli.output import (
    EXIT_OK,
    add_scheduler_option,
    check_output,
    fmt,
    print_front,
    progress,
)
from symreward.errors import SymrewardError
from symreward.search import engines


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    learn = commands.add_parser("learn", parents=[common],
                                help="learn a symbolic reward offline from a dataset")
    learn.add_argument("data", type=Path)
    learn.add_argument("--features", type=Path,
                       help="features TOML ([features] name = \"formula\"); default: those of "
                            "--from")
    learn.add_argument("--objective", default="preferences",
                       choices=["preferences", "rankings", "demonstrations", "rewards"])
    learn.add_argument("--engine", default=engines.SPARSE, choices=list(engines.ENGINES),
                       help="; ".join(
                           f"{name}: {engines.SPARSE_HELP if engine is None else engine.help}"
                           for name, engine in engines.ENGINES.items()))
    learn.add_argument("--time-limit", type=float, default=None,
                       help="seconds the structure search may take (evolve default 90)")
    learn.add_argument("--generations", type=int, default=None,
                       help="generations of the structure search (evolve default 300; it stops "
                            "earlier when its front stops improving)")
    learn.add_argument("--population", type=int, default=None,
                       help="individuals per generation (evolve default 200)")
    learn.add_argument("--seed", type=int, default=0)
    learn.add_argument("--from", dest="base", type=Path,
                       help="an earlier artifact: its locked terms are kept as written and it "
                            "becomes the parent")
    learn.add_argument("--max-terms", type=int, default=8)
    learn.add_argument("--folds", type=int, default=5, help="cross-validation folds")
    learn.add_argument("--selection", default="1se", choices=["1se", "best", "accuracy",
                                                               "simplest"])
    learn.add_argument("--noise", type=float, default=0.0,
                       help="label-noise probability of the preference model")
    learn.add_argument("--discount", type=float, default=1.0,
                       help="discount within segments (preferences, rankings)")
    learn.add_argument("--class-prior", type=float, default=None,
                       help="share of expert-like transitions among unlabeled ones "
                            "(demonstrations)")
    learn.add_argument("--max-unlabeled", type=int, default=None, metavar="N",
                       help="demonstrations: above N unlabeled transitions, learn from a seeded "
                            "uniform sample of N of them beside every expert one (default "
                            "100000)")
    learn.add_argument("--term", dest="user_terms", action="append", default=[],
                       metavar="FORMULA", help="an extra candidate term (repeatable)")
    learn.add_argument("--constraints", type=Path, action="append", default=[],
                       metavar="FILE.toml",
                       help="[[invariants]] and/or accepted findings the reward must respect "
                            "(repeatable); --from's invariants are constraints too")
    learn.add_argument("--name", help="name of the learned reward")
    learn.add_argument("-o", "--output", type=Path, required=True)
    add_scheduler_option(learn)
    learn.set_defaults(run=_learn)
    demo = commands.add_parser("demo", parents=[common],
                               help="learn Pendulum-v1's reward from preferences, end to end")
    demo.add_argument("-o", "--output", type=Path, default=Path("symreward-demo"),
                      help="folder for the artifact and rewards (default: symreward-demo)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)


def _learn(args: argparse.Namespace) -> int:
    from symreward.artifact import RewardArtifact
    from symreward.data import load_dataset
    from symreward.features import FeatureSet
    from symreward.learner import SymbolicRewardLearner
    from symreward.schedulers import scheduler
    from symreward.search.library import TermLibrary

    learner = SymbolicRewardLearner(
        objective=args.objective, engine=args.engine, seed=args.seed, max_terms=args.max_terms,
        n_folds=args.folds, selection=args.selection, noise=args.noise, discount=args.discount,
        class_prior=args.class_prior, name=args.name, time_limit=args.time_limit,
        generations=args.generations, population=args.population,
        library=TermLibrary(user_terms=tuple(args.user_terms)), progress=progress,
        **({} if args.max_unlabeled is None else {"max_unlabeled": args.max_unlabeled}))
    learner.check_options()
    check_output("-o", args.output, "the artifact")
    base = RewardArtifact.load(args.base) if args.base else None
    if args.features is not None:
        features = FeatureSet.from_toml(args.features)
    elif base is not None:
        features = base.features
    else:
        raise SymrewardError("learn: give --features F.toml (or --from OLD.toml to reuse its "
                             "features)")
    if args.constraints:
        from symreward.constraints import read_constraints

        constraints = read_constraints(args.constraints[0], features)
        for path in args.constraints[1:]:
            constraints = constraints.merged(read_constraints(path, features))
        learner.set_params(constraints=constraints)
    with scheduler(args.scheduler):
        dataset = load_dataset(args.data, lazy=True if args.scheduler is not None else None)
        learner.fit(dataset, features, base=base)
    print_front(learner.front_, learner.folds_["scored_by"])
    artifact = learner.artifact_
    artifact.save(args.output)
    metrics = learner.metrics_
    print(f"\nreward = {artifact.formula_text()}")
    held = "held-out" if learner.folds_["scored_by"] == "cross-validation" else "training"
    print(f"{held} loss {metrics['heldout_loss']:.4f} ± {metrics['heldout_loss_se']:.4f}, "
          f"{held} accuracy {fmt(metrics['heldout_accuracy'])}, "
          f"{metrics['learning_seconds']:.2f} s")
    print(f"wrote {args.output}")
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from symreward.demo import run_demo

    result = run_demo(args.output, seed=args.seed, progress=progress)
    print_front(result.learner.front_)
    metrics = result.learner.metrics_
    print(f"\ntrue reward    = {result.true_reward.formula_text()}")
    print(f"learned reward = {result.artifact.formula_text()}")
    print("  (preferences fix a reward only up to positive scale, an added constant and "
          "potential shaping)")
    print(f"held-out (CV) preference accuracy {fmt(metrics['heldout_accuracy'])}, "
          f"loss {metrics['heldout_loss']:.4f}")
    print(f"on fresh held-out data: EPIC distance to the true reward {result.epic:.4f}, "
          f"accuracy on noiseless true preferences {result.heldout_accuracy_vs_truth:.3f}")
    print(f"wrote {result.output} and {result.rewards_path} "
          f"({result.train_transitions} transitions, {result.pairs} pairs, "
          f"{result.seconds:.1f} s)")
    return EXIT_OK
