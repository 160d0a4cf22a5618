"""`kubedrift scan | run | version` (also `kubectl drift ...` through the `kubectl-drift` entry point).

Exit codes of `scan`, as `terraform plan -detailed-exitcode`: 0 no drift, 2 drift, 1 anything else
(usage errors included). Results go to stdout; progress and fatal errors to stderr.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import IO, TYPE_CHECKING, NoReturn

import yaml
from rich.console import Console

from kubedrift import digest
from kubedrift.diff import compare_objects
from kubedrift.kinds import BuiltinScopes
from kubedrift.model import DiffSettings, KubeObject, LoadError, ScanResult
from kubedrift.policy import PolicyError, parse_policy
from kubedrift.policy_schema import PolicySchemaError, validate_policy
from kubedrift.publish.fix import propose_fixes, render_fixes
from kubedrift.publish.pushgateway import Group, PushError, Pushgateway, error_reason
from kubedrift.publish.terminal import render_table, summary_line
from kubedrift.publish.unified import render_diff
from kubedrift.source.documents import DocumentError, read_documents
from kubedrift.source.manifests import STDIN, STDIN_SOURCE, load_manifests
from kubedrift.source.snapshot import load_live_snapshot
from kubedrift.verdicts import judge

if TYPE_CHECKING:
    from kubedrift.cluster.client import KubeClient

EXIT_CLEAN, EXIT_ERROR, EXIT_DRIFT = 0, 1, 2
OUTPUTS = ("table", "json", "yaml", "diff", "fix")
PLUGIN_NAME = "kubectl-drift"
PROGRESS_AFTER = 1.5
"""Seconds a step may take before a spinner shows on stderr (a terminal only)."""
NO_WRAP_WIDTH = 100_000
"""Console width without a terminal: CI logs get whole lines, never a path folded mid-word."""


class Fatal(Exception):
    """Nothing can be compared (bad policy, unreadable snapshot, no cluster): the errors, and stop."""

    def __init__(self, errors: list[LoadError]) -> None:
        super().__init__("; ".join(e.message for e in errors))
        self.errors = errors


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 1: exit code 2 means "drift found" to a CI pipeline."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


class _Console(Console):
    """A reader that closes the pipe early (`| head`) ends the output quietly, not the process."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        _discard_stdout()


def _discard_stdout() -> None:
    # Point stdout at /dev/null so the interpreter's last flush meets no closed pipe either.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _read_policy(path: str) -> DiffSettings:
    try:
        docs = read_documents(path)
    except DocumentError as exc:
        raise Fatal([LoadError(path, str(exc))]) from None
    policies = [d for d in docs if isinstance(d, dict) and d.get("kind") == "DriftPolicy"]
    if len(policies) != 1:
        raise Fatal([LoadError(path, f"expected exactly one DriftPolicy, found {len(policies)}")])
    try:
        policy = validate_policy(policies[0], require_source=False)
        return parse_policy(policy, require_source=False).settings
    except PolicySchemaError as exc:
        raise Fatal([LoadError(path, problem) for problem in exc.problems]) from None
    except PolicyError as exc:
        raise Fatal([LoadError(path, str(exc))]) from None


def _settings(args: argparse.Namespace) -> DiffSettings:
    settings = _read_policy(args.policy) if args.policy else DiffSettings()
    if args.namespace:
        settings.default_namespace = args.namespace
    return settings


@contextmanager
def _delayed_status(console: Console, text: str) -> Iterator[None]:
    """A transient spinner that appears only if the step lasts longer than PROGRESS_AFTER seconds."""
    status = console.status(text)
    lock = threading.Lock()
    shown = False

    def show() -> None:
        nonlocal shown
        with lock:
            if not done.is_set():
                status.start()
                shown = True

    done = threading.Event()
    timer = threading.Timer(PROGRESS_AFTER, show)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        with lock:
            done.set()
            timer.cancel()
            if shown:
                status.stop()


def _status(console: Console, text: str) -> AbstractContextManager[None]:
    """Progress on stderr for slow steps, only when stderr is a terminal (never in logs, never on stdout)."""
    return _delayed_status(console, text) if console.is_terminal else nullcontext()


def _read_snapshot(path: str) -> tuple[list[KubeObject], list[LoadError]]:
    """Live objects of --live; a file without any (missing, unreadable) stops the scan before any output."""
    live, errors = load_live_snapshot(path)
    if errors and not live:
        raise Fatal(errors)
    return live, errors


def _cluster_client(args: argparse.Namespace) -> KubeClient:
    from kubedrift.cluster.client import ApiError, KubeClient

    try:
        client = KubeClient.from_environment(args.kubeconfig, context=args.context)
    except Exception as exc:  # kubernetes.config raises ConfigException, or OSError for a bad path
        message = (
            "no --live snapshot given and no usable cluster configuration "
            f"(--kubeconfig/--context, KUBECONFIG, in-cluster service account, ~/.kube/config): {exc}"
        )
        raise Fatal([LoadError(args.kubeconfig or "", message)]) from None
    try:
        client.get("/version")
    except ApiError as exc:
        if exc.status == 0:  # unreachable: one clear error, not one per kind
            raise Fatal([LoadError(client.host, str(exc))]) from None
    return client


def _compare_with_cluster(
    desired: list[KubeObject], settings: DiffSettings, args: argparse.Namespace, console: Console
) -> ScanResult:
    """Live twins from the chosen kubeconfig context; kinds that cannot be listed are errors."""
    from kubedrift.cluster.discovery import Discovery
    from kubedrift.cluster.live import LiveReader
    from kubedrift.engine import compare_with_cluster

    client = _cluster_client(args)
    with _status(console, f"reading live objects for {len(desired)} manifests from {client.host}…"):
        comparison = compare_with_cluster(desired, LiveReader(client, Discovery(client)), settings)
    comparison.result.errors[:0] = comparison.read_errors
    return comparison.result


def _compare(args: argparse.Namespace, progress: Console) -> ScanResult:
    try:
        digest.use_key(digest.read_key_file(args.digest_key_file) if args.digest_key_file else digest.new_key())
    except digest.DigestKeyError as exc:
        raise Fatal([LoadError(args.digest_key_file, str(exc))]) from None
    settings = _settings(args)
    if STDIN in args.manifests and sys.stdin.isatty():
        raise Fatal([LoadError(STDIN_SOURCE, "--manifests -: stdin is a terminal; pipe manifests in")])
    live, live_errors = _read_snapshot(args.live) if args.live else (None, [])
    with _status(progress, "reading manifests…"):
        desired, errors = load_manifests(
            args.manifests, default_namespace=settings.default_namespace, scopes=BuiltinScopes()
        )
    errors += live_errors
    if not desired:
        inputs = ", ".join(STDIN_SOURCE if path == STDIN else path for path in args.manifests)
        errors.append(LoadError(inputs, "no Kubernetes object found"))
        return ScanResult(resources=0, errors=errors)
    if live is not None:
        with _status(progress, f"comparing {len(desired)} objects…"):
            result = compare_objects(desired, live, settings)
            if args.output == "fix":
                propose_fixes(result, desired, live, settings)
    else:
        result = _compare_with_cluster(desired, settings, args, progress)
    result.errors[:0] = errors
    return result


def scan(args: argparse.Namespace) -> int:
    # Decoded manifests are millions of small acyclic containers: the cyclic collector would walk
    # them again and again for nothing (a third of a large scan's time). A one-shot run can skip it.
    gc.disable()
    started = time.monotonic()
    stderr = _Console(stderr=True)
    fatal = False
    try:
        result = _compare(args, stderr)
    except Fatal as exc:
        result, fatal = ScanResult(resources=0, errors=exc.errors), True
    except Exception as exc:  # a crash still gives a well-formed answer and exit code 1
        result, fatal = ScanResult(resources=0, errors=[LoadError("", f"{type(exc).__name__}: {exc}")]), True
    code = EXIT_ERROR if result.errors else (EXIT_DRIFT if result.drifts else EXIT_CLEAN)
    duration = time.monotonic() - started
    try:
        _print(result, args.output, stderr, fatal=fatal)
    except BrokenPipeError:
        _discard_stdout()  # the reader has what it wanted; the verdict (exit code) stands
    if args.pushgateway and not _push(args, result, duration, stderr):
        return EXIT_ERROR
    return code


def _push(args: argparse.Namespace, result: ScanResult, duration: float, stderr: Console) -> bool:
    """`--pushgateway`: the scan's metrics, after its output; a push that fails fails the run.

    The scan is judged as the operator judges its scans, against the drift its group held before.
    """
    try:
        gateway = Pushgateway.at(args.pushgateway, Group.for_scan(args.policy, args.name, args.namespace))
        previous = gateway.read_previous()
        outcome = judge(gateway.group.ref, finished=datetime.datetime.now(datetime.UTC), result=result,
                        declared=result.compared, unread={}, previous=previous.active, errors=result.errors,
                        incomplete="an input of the scan could not be read" if result.errors else None)
        gateway.push(outcome, previous, duration=duration, error_reason=error_reason(result, args.policy))
    except PushError as exc:
        stderr.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return False
    return True


def _print_errors(result: ScanResult, console: Console) -> None:
    for error in result.errors:
        where = f"{error.file}: " if error.file else ""
        console.print(f"error: {where}{error.message}", markup=False, highlight=False, soft_wrap=True)


def _print(result: ScanResult, output: str, stderr: Console, *, fatal: bool) -> None:
    """The result on stdout; fatal errors (nothing compared) on stderr for people as well."""
    if fatal:
        _print_errors(result, stderr)
    if output in ("json", "yaml"):
        _dump(result, output, sys.stdout)
        return
    if fatal:
        return
    stdout = _Console() if sys.stdout.isatty() else _Console(width=NO_WRAP_WIDTH)
    if output == "fix":
        sys.stdout.write(render_fixes(result))
        sys.stdout.flush()
        _print_errors(result, stderr)
        stderr.print(summary_line(result), markup=False, highlight=False, soft_wrap=True)
    elif output == "diff":
        render_diff(result, stdout)
        _print_errors(result, stderr)
        stderr.print(summary_line(result), markup=False, highlight=False, soft_wrap=True)
    else:
        render_table(result, stdout)


def _dump(result: ScanResult, output: str, stream: IO[str]) -> None:
    document = json.loads(json.dumps(result.to_json(), default=str))
    if output == "json":
        json.dump(document, stream, indent=2)
        stream.write("\n")
    else:
        yaml.safe_dump(document, stream, sort_keys=False)
    stream.flush()


def _print_version(_args: argparse.Namespace) -> int:
    from kubedrift.version import version_line

    print(version_line())
    return EXIT_CLEAN


def build_parser(include_run: bool = True, prog: str = "kubedrift") -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description="Find drift between Git manifests and a cluster.")
    commands = parser.add_subparsers(dest="command", required=True)

    scan_cmd = commands.add_parser(
        "scan",
        help="compare manifests with live objects once (exit 0 clean, 2 drift, 1 error)",
        description="Compare manifests with live objects once. Exit code: 0 no drift, 2 drift, 1 error.",
    )
    scan_cmd.add_argument(
        "--manifests",
        action="append",
        required=True,
        metavar="PATH",
        help="file or directory of YAML/JSON manifests, or - for stdin (repeatable; kustomize dirs are rendered)",
    )
    scan_cmd.add_argument(
        "--live",
        metavar="SNAPSHOT",
        help="`kubectl get -o yaml|json` output; without it the live objects are read from the cluster",
    )
    scan_cmd.add_argument("--namespace", metavar="NS", help="namespace of manifests that name none (default: default)")
    scan_cmd.add_argument(
        "--policy", metavar="FILE", help="DriftPolicy whose ignore rules and severity overrides apply"
    )
    scan_cmd.add_argument(
        "--output",
        "-o",
        choices=OUTPUTS,
        default="table",
        help="table (default), json or yaml (the ScanResult document), diff (a unified diff per drifted object), "
        "fix (what would put each object back to Git: YAML for `kubectl apply --server-side`, removals as comments)",
    )
    scan_cmd.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig to read the cluster from (without --live)")
    scan_cmd.add_argument("--context", metavar="NAME", help="kubeconfig context to use (without --live)")
    scan_cmd.add_argument("--digest-key-file", metavar="FILE",
                          help="key of the hmac: digests of Secret values (default: a new random key per run)")
    scan_cmd.add_argument(
        "--pushgateway", metavar="URL", help="push the scan's metrics to this Prometheus Pushgateway (job kubedrift)"
    )
    scan_cmd.add_argument(
        "--name", metavar="NAME", help="`policy` label of pushed metrics without --policy (default: scan)"
    )
    scan_cmd.set_defaults(func=scan)

    if include_run:  # kopf is heavy: `scan` and `version` start without it
        from kubedrift import runner

        run_cmd = commands.add_parser("run", help="run the operator (kopf) against the current cluster")
        runner.add_arguments(run_cmd)
        run_cmd.set_defaults(func=runner.main)

    version_cmd = commands.add_parser("version", help="print the version")
    version_cmd.set_defaults(func=_print_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = "kubectl drift" if os.path.basename(sys.argv[0]) == PLUGIN_NAME else "kubedrift"
    parser = build_parser(include_run=not argv or argv[0] not in ("scan", "version"), prog=prog)
    args = parser.parse_args(argv)
    if getattr(args, "live", None) and (args.kubeconfig or args.context):
        parser.error("--kubeconfig and --context choose the cluster to read; with --live there is none")
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
