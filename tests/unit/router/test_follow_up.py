import pytest

from services.worker.router.follow_up import is_elliptical


@pytest.mark.parametrize(
    "message",
    [
        "what about headphones?",
        "and if I order at 3pm?",
        "ok thanks. and the smart plug?",
        "how long can she use it for?",
        "it already shipped yesterday though",
        "运费谁出？",
        "那可以分期吗？",
        "考试周呢？",
        "寄新疆也一样吗？",
    ],
)
def test_a_follow_up_that_leans_on_the_previous_turn_is_elliptical(message: str) -> None:
    assert is_elliptical(message)


@pytest.mark.parametrize(
    "message",
    [
        "What is the warranty period for a kettle that I bought last month in your shop?",
        "can my phone, tablet and laptop all be on the campus network at the same time?",
        "激活码过期了怎么办",
        "请问你们的电水壶保修期是多久，我上个月在网上买的",
    ],
)
def test_a_message_that_names_its_own_topic_is_not(message: str) -> None:
    assert not is_elliptical(message)
