"""``chatq eval FILE --tenant NAME``: score a question set on a running chatq (``--url`` and
``--key``) or on a private stack of its own on the embedded default, as ``chatq demo`` runs it.

On a private stack it creates the tenant, loads ``--kb DIR`` into it (``tenant.yaml``,
``documents/``, ``faq.yaml``, ``intents.yaml``; ``orders.json`` is served by a local
``OrderService`` that the intents reach through ``{orders_url}``) and, for ``--mode model`` or
``both``, a second tenant ``<tenant>-model-only`` with no knowledge and the model fallback on,
so the model answers every question alone: the router's gain is the difference.

Exit status: 0, or 1 when the router run's accuracy is under ``--min-accuracy``; 2 for a bad
eval file, knowledge folder or combination of flags.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chatq.evaluation.questions import QuestionSet
    from chatq.evaluation.runner import Result
    from chatq.evaluation.scoring import Similarity

EXIT_OK = 0
EXIT_BELOW_THRESHOLD = 1
EXIT_USAGE = 2
EVAL_DIR = Path(".chatq/eval")
ROUTER, MODEL = "router", "model"
MODES = {"router": (ROUTER,), "model": (MODEL,), "both": (ROUTER, MODEL)}


def model_only_tenant(tenant: str) -> str:
    return f"{tenant}-model-only"


def _fraction(text: str) -> float:
    """``0.8`` or ``80%``."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a fraction: {text!r} (write 0.8 or 80%)") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (or 0% and 100%): {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def add_eval_parser(commands: Any) -> argparse.ArgumentParser:
    """Register ``chatq eval`` on the ``chatq`` sub-parsers object."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "eval",
        help="score the answers to a question set (YAML or JSON)",
        description="Score the answers to a question set, on a running chatq (--url, --key) "
        "or on a private stack of its own.",
    )
    parser.add_argument("file", metavar="FILE", help="the question set (eval.yaml)")
    parser.add_argument("--tenant", required=True, metavar="NAME", help="the tenant asked")
    parser.add_argument("--url", help="a running chatq (default: start a private stack)")
    parser.add_argument("--key", help="an API key of the tenant on --url")
    parser.add_argument(
        "--kb", metavar="DIR", help="load this bundle into the tenant first (private stack)"
    )
    parser.add_argument(
        "--mode",
        choices=sorted(MODES),
        help="router: the tenant's pipeline; model: the model alone, without knowledge; "
        "both: side by side (default: both on a private stack, router with --url)",
    )
    parser.add_argument(
        "--similarity",
        action="store_true",
        help="also report semantic similarity to the reference answers",
    )
    parser.add_argument(
        "--out", metavar="PATH", help="JSON results (default .chatq/eval/<name>-<UTC time>.json)"
    )
    parser.add_argument("--concurrency", type=_positive_int, default=8, metavar="N")
    parser.add_argument("--max-new-tokens", type=_positive_int, default=96, metavar="N")
    parser.add_argument(
        "--timeout", type=float, default=300.0, metavar="S", help="longest wait for one job"
    )
    parser.add_argument(
        "--min-accuracy",
        type=_fraction,
        metavar="X",
        help="exit 1 if the router run's accuracy is below X (0.8 or 80%%)",
    )
    parser.add_argument(
        "--keep-data", action="store_true", help="keep the private stack's data folder"
    )
    parser.add_argument("--verbose", action="store_true", help="list the incorrect answers")
    parser.set_defaults(handler=cmd_eval, eval_parser=parser)
    return parser


def _modes(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[str, ...]:
    if args.url is None:
        if args.key:
            parser.error("--key needs --url (without --url a private stack issues its own key)")
        return MODES[args.mode or "both"]
    if not args.key:
        parser.error("--url needs --key (an API key of the tenant)")
    if args.kb:
        parser.error("--kb loads a private stack; for --url use `chatq kb ingest` beforehand")
    if args.mode == "both":
        parser.error("--mode both needs a private stack (leave out --url): one key is one tenant")
    return MODES[args.mode or "router"]


@dataclass(frozen=True)
class RunPlan:
    question_set: QuestionSet
    modes: tuple[str, ...]
    concurrency: int
    max_new_tokens: int
    timeout_s: float
    similarity: Similarity | None

    def run(
        self,
        label: str,
        base_url: str,
        key: str,
        health_check: Callable[[], None] | None = None,
    ) -> list[Result]:
        from chatq.evaluation.runner import run_questions

        return run_questions(
            base_url,
            key,
            self.question_set,
            concurrency=self.concurrency,
            max_new_tokens=self.max_new_tokens,
            timeout_s=self.timeout_s,
            similarity=self.similarity,
            progress=True,
            label=label,
            health_check=health_check,
            warm_up=True,
        )


def cmd_eval(args: argparse.Namespace) -> int:
    from chatq.evaluation.questions import EvalFileError, load_question_set
    from chatq.evaluation.report import (
        comparison_table,
        incorrect_answers,
        report_record,
        summarise,
        write_report,
    )
    from chatq.evaluation.scoring import EmbeddingSimilarity
    from chatq.knowledge_files import KnowledgeFileError

    parser: argparse.ArgumentParser = args.eval_parser
    modes = _modes(args, parser)
    kb = Path(args.kb) if args.kb else None
    try:
        question_set = load_question_set(Path(args.file))
        if kb is not None and not kb.is_dir():
            raise EvalFileError(f"{kb}: not a folder (--kb takes a bundle such as examples/shop)")
        plan = RunPlan(
            question_set,
            modes,
            args.concurrency,
            args.max_new_tokens,
            args.timeout,
            EmbeddingSimilarity() if args.similarity else None,
        )
        if args.url:
            runs = {modes[0]: plan.run(modes[0], args.url.rstrip("/"), args.key)}
            where = args.url
        else:
            runs = _run_on_private_stack(plan, args.tenant, kb, keep_data=args.keep_data)
            where = "private stack"
    except (EvalFileError, KnowledgeFileError) as error:
        print(f"chatq: {error}", file=sys.stderr)
        return EXIT_USAGE

    summaries = [summarise(label, results) for label, results in runs.items()]
    print(f"\n{question_set.name}: {len(question_set.questions)} questions ({where})\n")
    print(comparison_table(summaries))
    if args.verbose:
        for label, results in runs.items():
            listing = incorrect_answers(results)
            if listing:
                print(f"\nincorrect answers ({label}):\n{listing}")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out) if args.out else EVAL_DIR / f"{question_set.name}-{stamp}.json"
    record = report_record(
        question_set,
        runs,
        file=str(args.file),
        url=where,
        tenant=args.tenant,
        kb=args.kb,
        max_new_tokens=args.max_new_tokens,
        concurrency=args.concurrency,
    )
    write_report(out, record)
    print(f"\nwrote {out}")

    if args.min_accuracy is not None:
        gate = next((s for s in summaries if s.label == ROUTER), summaries[0])
        if gate.accuracy < args.min_accuracy:
            print(
                f"chatq: {gate.label} accuracy {gate.accuracy:.1%} is below the minimum "
                f"{args.min_accuracy:.1%}",
                file=sys.stderr,
            )
            return EXIT_BELOW_THRESHOLD
    return EXIT_OK


def _run_on_private_stack(
    plan: RunPlan, tenant: str, kb: Path | None, *, keep_data: bool
) -> dict[str, list[Result]]:
    from chatq.demo import free_port
    from chatq.evaluation.questions import EvalFileError
    from chatq.knowledge_files import load_bundle
    from chatq.order_service import OrderService
    from chatq.stack import Stack
    from shared.api_keys import create_api_key
    from shared.config import get_settings
    from shared.db.engine import dispose_engine, session_scope
    from shared.knowledge import store
    from shared.knowledge.schemas import TenantSettings
    from shared.logs import configure_logging
    from shared.model_layout import ModelLayout
    from training.model_build import ModelSource, build_model

    data_dir = (EVAL_DIR / uuid.uuid4().hex[:12]).resolve()
    env = {
        "CHATQ_API_PORT": str(free_port()),
        "CHATQ_DATA_DIR": str(data_dir),
        "CHATQ_DATABASE_URL": "",  # empty: SQLite and the embedded broker in the data folder
        "CHATQ_BROKER_URL": "",
        "CHATQ_WEBHOOK_ALLOW_PRIVATE": "true",
        "CHATQ_RULE_HTTP_ALLOW_PRIVATE": "true",  # the order service listens on loopback
    }
    os.environ.update(env)  # this process reads the same settings as the stack it starts
    os.environ.setdefault("CHATQ_LOG_FORMAT", "console")
    os.environ.setdefault("CHATQ_LOG_LEVEL", "WARNING")  # the scores, not the chatter
    get_settings.cache_clear()
    settings = get_settings()
    configure_logging(settings, "chatq-eval")
    if ModelLayout(settings.model_dir).read_manifest() is None:
        print(f"No model in {settings.model_dir}: building the default one first ...")
        # beside the models, as `chatq demo` finds it: .chatq/models/default → .chatq/cache
        build_model(
            ModelSource.default(settings.model_dir.parent.parent / "cache"), settings.model_dir
        )
    env["CHATQ_MODEL_DIR"] = str(settings.model_dir)
    database_url = settings.database_url
    stack = Stack(settings, env)

    with contextlib.ExitStack() as cleanup:
        if not keep_data:
            cleanup.callback(shutil.rmtree, data_dir, ignore_errors=True)
        else:
            cleanup.callback(print, f"data kept in {data_dir}")
        cleanup.callback(dispose_engine, database_url)
        orders_file = kb / "orders.json" if kb is not None else None
        orders = None
        if orders_file is not None and orders_file.is_file():
            try:
                service = OrderService.from_file(orders_file)
            except ValueError as error:
                raise EvalFileError(str(error)) from None
            orders = cleanup.enter_context(service)

        print(f"Starting a private stack on {stack.base_url} (data in {data_dir}) ...")
        stack.prepare()
        keys: dict[str, str] = {}
        if ROUTER in plan.modes:
            keys[ROUTER] = create_api_key(database_url, tenant).key
            if kb is not None:
                variables = {"orders_url": orders.url} if orders is not None else None
                loaded = load_bundle(database_url, tenant, kb, variables=variables)
                print(
                    f"tenant {tenant!r}: {loaded.documents} document(s) in {loaded.chunks} "
                    f"chunk(s), {loaded.faq} FAQ entries, {loaded.intents} intent(s) from {kb}"
                )
        if MODEL in plan.modes:
            model_tenant = model_only_tenant(tenant)
            with session_scope(database_url) as session:
                row = store.ensure_tenant(session, model_tenant)
                store.put_settings(session, row.id, TenantSettings(llm_fallback=True))
            keys[MODEL] = create_api_key(database_url, model_tenant, tenant=model_tenant).key

        cleanup.callback(stack.stop)
        stack.start()
        stack.wait_ready(timeout_s=120)
        # one run after the other: each has the workers to itself, so latencies compare
        runs = {
            label: plan.run(label, stack.base_url, keys[label], stack.check_alive)
            for label in plan.modes
        }
        print("Stopping the stack ...")
    return runs
