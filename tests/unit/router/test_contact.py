"""The fallback of a tenant that configured none names the contact its own knowledge gives."""

from __future__ import annotations

from services.worker.router.contact import find_contact


def test_the_service_address_wins_over_one_mentioned_more_often() -> None:
    texts = [
        "Your login is netid@uni.example. Reset netid@uni.example at the portal.",
        "Use netid@uni.example for everything.",
        "Need help? Contact helpdesk@uni.example or call +49 30 1234567 (ext. 55).",
    ]
    contact = find_contact(texts)
    assert contact.email == "helpdesk@uni.example"
    assert contact.phone == "+49 30 1234567"


def test_dates_and_order_numbers_are_not_phone_numbers() -> None:
    contact = find_contact(["Order 20261234 shipped on 2026-12-02 and arrives 2026-12-05."])
    assert contact.phone is None and contact.email is None
    assert contact.fallback() is None


def test_chinese_documents_give_the_hotline() -> None:
    contact = find_contact(
        ["如需帮助，请拨打客服热线 400-800-1234，或发邮件至 kefu@shop.example。"]
    )
    assert contact == type(contact)(email="kefu@shop.example", phone="400-800-1234")
    fallback = contact.fallback()
    assert fallback is not None
    assert "kefu@shop.example" in fallback.pick("en") and "400-800-1234" in fallback.pick("en")
    assert fallback.pick("zh").startswith("抱歉") and "400-800-1234" in fallback.pick("zh")
