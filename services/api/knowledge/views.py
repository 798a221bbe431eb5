"""HTTP routes of a tenant's knowledge: documents and FAQ entries.

``PUT`` answers once the change is committed; the tenant's knowledge version moves in the same
transaction, so the next job any worker takes searches the new knowledge.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from services.api.auth import current_caller, require_api_key
from services.api.context import api_context
from services.api.knowledge.service import (
    check_external_id,
    document_view,
    faq_view,
    not_found,
    page,
    page_arguments,
)
from services.api.request_body import parse_json_body
from shared.api_keys import Scope
from shared.db.engine import session_scope
from shared.knowledge import store
from shared.knowledge.schemas import DocumentIn, FaqIn

blueprint = Blueprint("knowledge", __name__, url_prefix="/v1/knowledge")


def _json(body: object, status: int) -> Response:
    response = jsonify(body)
    response.status_code = status
    return response


@blueprint.put("/documents/<doc_id>")
@require_api_key(Scope.KNOWLEDGE_WRITE)
def put_document(doc_id: str) -> Response:
    external_id = check_external_id(doc_id)
    document = parse_json_body(DocumentIn)
    with session_scope(api_context().settings.database_url) as session:
        stored = store.put_document(session, current_caller().tenant_id, external_id, document)
        body = document_view(stored.document, stored.chunks)
    return _json(body, 201 if stored.created else 200)


@blueprint.get("/documents")
@require_api_key(Scope.KNOWLEDGE_WRITE)
def list_documents() -> Response:
    limit, after = page_arguments()
    with session_scope(api_context().settings.database_url) as session:
        rows = store.list_documents(session, current_caller().tenant_id, limit=limit, after=after)
        chunks = store.count_chunks(session, [row.id for row in rows])
        items = [document_view(row, chunks.get(row.id, 0)) for row in rows]
    return jsonify(page(items, limit))


@blueprint.get("/documents/<doc_id>")
@require_api_key(Scope.KNOWLEDGE_WRITE)
def get_document(doc_id: str) -> Response:
    external_id = check_external_id(doc_id)
    with session_scope(api_context().settings.database_url) as session:
        row = store.get_document(session, current_caller().tenant_id, external_id)
        if row is None:
            raise not_found("document", external_id)
        body = document_view(
            row, store.count_chunks(session, [row.id]).get(row.id, 0), with_text=True
        )
    return jsonify(body)


@blueprint.delete("/documents/<doc_id>")
@require_api_key(Scope.KNOWLEDGE_WRITE)
def delete_document(doc_id: str) -> Response:
    external_id = check_external_id(doc_id)
    with session_scope(api_context().settings.database_url) as session:
        if not store.delete_document(session, current_caller().tenant_id, external_id):
            raise not_found("document", external_id)
    return Response(status=204)


@blueprint.put("/faq/<faq_id>")
@require_api_key(Scope.KNOWLEDGE_WRITE)
def put_faq(faq_id: str) -> Response:
    external_id = check_external_id(faq_id)
    entry = parse_json_body(FaqIn)
    with session_scope(api_context().settings.database_url) as session:
        row, created = store.put_faq(session, current_caller().tenant_id, external_id, entry)
        body = faq_view(row)
    return _json(body, 201 if created else 200)


@blueprint.get("/faq")
@require_api_key(Scope.KNOWLEDGE_WRITE)
def list_faq() -> Response:
    limit, after = page_arguments()
    with session_scope(api_context().settings.database_url) as session:
        rows = store.list_faq(session, current_caller().tenant_id, limit=limit, after=after)
        items = [faq_view(row) for row in rows]
    return jsonify(page(items, limit))


@blueprint.get("/faq/<faq_id>")
@require_api_key(Scope.KNOWLEDGE_WRITE)
def get_faq(faq_id: str) -> Response:
    external_id = check_external_id(faq_id)
    with session_scope(api_context().settings.database_url) as session:
        row = store.get_faq(session, current_caller().tenant_id, external_id)
        if row is None:
            raise not_found("FAQ entry", external_id)
        body = faq_view(row)
    return jsonify(body)


@blueprint.delete("/faq/<faq_id>")
@require_api_key(Scope.KNOWLEDGE_WRITE)
def delete_faq(faq_id: str) -> Response:
    external_id = check_external_id(faq_id)
    with session_scope(api_context().settings.database_url) as session:
        if not store.delete_faq(session, current_caller().tenant_id, external_id):
            raise not_found("FAQ entry", external_id)
    return Response(status=204)
