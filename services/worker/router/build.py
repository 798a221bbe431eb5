"""Putting the router together from the settings: embedder, knowledge registry, answer cache,
rule handlers."""

from __future__ import annotations

from services.worker.knowledge.embeddings import load_embedder
from services.worker.router.answer_cache import AnswerCache
from services.worker.router.handlers import RuleHandlers
from services.worker.router.router import Router, Thresholds
from services.worker.router.tenant_knowledge import KnowledgeRegistry
from shared.config import Settings
from shared.logs import get_logger
from shared.messaging.schemas import EngineInfo
from shared.webhook_client import WebhookClient

log = get_logger(__name__)


def build_router(settings: Settings, engine: EngineInfo) -> tuple[Router, KnowledgeRegistry]:
    embedder = load_embedder(settings.embedding_model, settings.embedding_model_dir)
    registry = KnowledgeRegistry(settings.database_url, embedder, settings.intent_threshold)
    router = Router(
        registry=registry,
        cache=AnswerCache(settings.database_url, settings.answer_cache_size),
        handlers=RuleHandlers(
            allow_private=settings.rule_http_allow_private,
            client=WebhookClient(),
        ),
        thresholds=Thresholds(
            intent=settings.intent_threshold,
            faq=settings.faq_threshold,
            faq_sure=settings.faq_sure_threshold,
            faq_margin=settings.faq_margin,
            knowledge=settings.knowledge_threshold,
            knowledge_zh=settings.knowledge_threshold_zh,
            knowledge_lexical_weight=settings.knowledge_lexical_weight,
            knowledge_lexical_cap=settings.knowledge_lexical_cap,
            second_passage=settings.second_passage_margin,
            related_passage=settings.related_passage_margin,
        ),
        model_name=f"{engine.model}:{engine.variant}",
        knowledge_answer=settings.knowledge_answer,
        top_k=settings.knowledge_top_k,
    )
    log.info("router_ready", embedder=embedder.name, knowledge_answer=settings.knowledge_answer)
    return router, registry
