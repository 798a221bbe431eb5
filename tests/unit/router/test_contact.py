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
    # the login is mentioned more often than the desk, but it is nobody to write to
    assert contact.emails == ("helpdesk@uni.example",)
    assert contact.phones == ("+49 30 1234567",)


def test_two_desks_are_both_named() -> None:
    # A hotel's documents name its reservations team more often than its front desk; a guest
    # whose question nothing answers may need either, so the fallback names both.
    texts = [
        "Book by email to reservations@hotel.example or call the Reservations team on +1 555 0101.",
        "Contact the Reservations team at reservations@hotel.example.",
        "Book the shuttle at the front desk or by email to frontdesk@hotel.example.",
        "Group bookings: please email groups@hotel.example.",
        "Questions? Call the front desk on +1 555 0100, or phone +1 555 0101 for bookings.",
    ]
    contact = find_contact(texts)
    assert contact.emails == ("reservations@hotel.example", "frontdesk@hotel.example")
    assert set(contact.phones) == {"+1 555 0101", "+1 555 0100"}
    fallback = contact.fallback()
    assert fallback is not None
    english, chinese = fallback.pick("en"), fallback.pick("zh")
    for contact_way in ("reservations@hotel.example", "frontdesk@hotel.example", "555 0100"):
        assert contact_way in english and contact_way in chinese
    assert "groups@" not in english


def test_dates_and_order_numbers_are_not_phone_numbers() -> None:
    contact = find_contact(["Order 20261234 shipped on 2026-12-02 and arrives 2026-12-05."])
    assert contact.phones == () and contact.emails == ()
    assert contact.fallback() is None


def test_chinese_documents_give_the_hotline() -> None:
    contact = find_contact(
        ["如需帮助，请拨打客服热线 400-800-1234，或发邮件至 kefu@shop.example。"]
    )
    assert contact == type(contact)(emails=("kefu@shop.example",), phones=("400-800-1234",))
    fallback = contact.fallback()
    assert fallback is not None
    assert "kefu@shop.example" in fallback.pick("en") and "400-800-1234" in fallback.pick("en")
    assert fallback.pick("zh").startswith("抱歉") and "400-800-1234" in fallback.pick("zh")
