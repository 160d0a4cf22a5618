"""`kubedrift scan | run | version`."""

from __future__ import annotations

import argparse
import gc
import json
import sys
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext

import yaml
from rich.console import Console

from kubedrift import __version__
from kubedrift.diff import compare_objects
from kubedrift.kinds import BuiltinScopes
from kubedrift.model import DiffSettings, KubeObject, LoadError, ScanResult
from kubedrift.policy import PolicyError, parse_policy
from kubedrift.publish.terminal import render_table
from kubedrift.source.documents import DocumentError, parse_json, parse_yaml, read_text
from kubedrift.source.manifests import load_manifests
from kubedrift.source.snapshot import load_live_snapshot

EXIT_CLEAN, EXIT_ERROR, EXIT_DRIFT = 0, 1, 2


def _settings(args: argparse.Namespace) -> DiffSettings:
    settings = DiffSettings()
    if args.policy:
        docs = (
            parse_json(read_text(args.policy)) if args.policy.endswith(".json") else parse_yaml(read_text(args.policy))
        )
        bodies = [d for d in (docs if isinstance(docs, list) else [docs]) if isinstance(d, dict)]
        policies = [d for d in bodies if d.get("kind") == "DriftPolicy"]
        if len(policies) != 1:
            raise PolicyError(f"expected exactly one DriftPolicy, found {len(policies)}")
        settings = parse_policy(policies[0], require_source=False).settings
    if args.namespace:
        settings.default_namespace = args.namespace
    return settings


def _status(console: Console, text: str) -> AbstractContextManager[object]:
    return console.status(text) if console.is_terminal else nullcontext()


def _compare_with_cluster(desired: list[KubeObject], settings: DiffSettings, console: Console) -> ScanResult:
    """Live twins from the current kubeconfig context; kinds that cannot be listed are errors."""
    from kubedrift.cluster.client import KubeClient
    from kubedrift.cluster.discovery import Discovery
    from kubedrift.cluster.live import LiveReader
    from kubedrift.engine import compare_with_cluster

    try:
        client = KubeClient.from_environment()
    except Exception as exc:  # kubernetes.config raises ConfigException, or OSError for a bad path
        raise RuntimeError(
            "no --live snapshot given and no usable cluster configuration "
            f"(KUBECONFIG, in-cluster service account, ~/.kube/config): {exc}"
        ) from None
    with _status(console, f"reading live objects for {len(desired)} manifests from the cluster…"):
        comparison = compare_with_cluster(desired, LiveReader(client, Discovery(client)), settings)
    comparison.result.errors[:0] = comparison.read_errors
    return comparison.result


def scan(args: argparse.Namespace) -> int:
    # Decoded manifests are millions of small acyclic containers: the cyclic collector would walk
    # them again and again for nothing (a third of a large scan's time). A one-shot run can skip it.
    gc.disable()
    err = Console(stderr=True)
    result = ScanResult(resources=0)
    try:
        settings = _settings(args)
        with _status(err, "reading manifests…"):
            desired, errors = load_manifests(
                args.manifests, default_namespace=settings.default_namespace, scopes=BuiltinScopes()
            )
        if args.live:
            live, live_errors = load_live_snapshot(args.live)
            errors += live_errors
            with _status(err, f"comparing {len(desired)} objects…"):
                result = compare_objects(desired, live, settings)
        else:
            result = _compare_with_cluster(desired, settings, err)
        result.errors[:0] = errors
    except (PolicyError, DocumentError) as exc:
        result.errors.append(LoadError(args.policy or "", str(exc)))
    except Exception as exc:  # a fatal error still gives a well-formed answer and exit code 1
        result.errors.append(LoadError("", f"{type(exc).__name__}: {exc}"))
    _print(result, args.output)
    if result.errors:
        return EXIT_ERROR
    return EXIT_DRIFT if result.drifts else EXIT_CLEAN


def _print(result: ScanResult, output: str) -> None:
    if output == "json":
        json.dump(result.to_json(), sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    elif output == "yaml":
        yaml.safe_dump(json.loads(json.dumps(result.to_json(), default=str)), sys.stdout, sort_keys=False)
    else:
        render_table(result, Console())


def build_parser(include_run: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubedrift", description="Find drift between Git manifests and a cluster.")
    commands = parser.add_subparsers(dest="command", required=True)

    scan_cmd = commands.add_parser(
        "scan", help="compare manifests with live objects once (exit 0 clean, 2 drift, 1 error)"
    )
    scan_cmd.add_argument(
        "--manifests",
        action="append",
        required=True,
        metavar="PATH",
        help="file or directory of YAML/JSON manifests (repeatable; kustomize dirs are rendered)",
    )
    scan_cmd.add_argument(
        "--live",
        metavar="SNAPSHOT",
        help="`kubectl get -o yaml|json` output; without it the current kubeconfig context is read",
    )
    scan_cmd.add_argument("--namespace", metavar="NS", help="namespace of manifests that name none (default: default)")
    scan_cmd.add_argument(
        "--policy", metavar="FILE", help="DriftPolicy whose ignore rules and severity overrides apply"
    )
    scan_cmd.add_argument("--output", "-o", choices=("table", "json", "yaml"), default="table")
    scan_cmd.set_defaults(func=scan)

    if include_run:  # kopf is heavy: `scan` and `version` start without it
        from kubedrift import runner

        run_cmd = commands.add_parser("run", help="run the operator (kopf) against the current cluster")
        runner.add_arguments(run_cmd)
        run_cmd.set_defaults(func=runner.main)

    version_cmd = commands.add_parser("version", help="print the version")
    version_cmd.set_defaults(func=lambda _args: print(f"kubedrift {__version__}") or 0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(include_run=not argv or argv[0] not in ("scan", "version")).parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
