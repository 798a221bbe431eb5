# ruff: noqa: E501
# (a table of sentences: a sentence cut to fit 100 columns reads worse than a long line)
"""Build ``shop_instructions.jsonl``: the instruction set that ships with chatq.

    python -m training.datasets.build_shop_instructions

Every row is a customer question (or a short conversation) with a short, correct answer in the
question's language, and ``facts``: the strings a correct answer contains. The facts come from
the demo shop's own texts (examples/shop/faq.yaml, documents/*.md, tenant.yaml) and, for a
smaller share, the demo help desk's (examples/helpdesk/); the questions are worded here, in
several customer-style ways per fact. None is taken from an evaluation set
(examples/*/eval.yaml): those stay held out, and tests/unit/training/test_data_shop_dataset.py
checks it. Questions the shop's texts cannot answer get the tenant's fallback answer, so the
model learns to say it does not know and where to turn.

The table below is the source; the JSON lines are generated from it (and committed), so a
change to a fact is one edit here and a rerun.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from training.data.examples import ChatExample, ChatTurn, Role, write_examples
from training.datasets import SHOP_INSTRUCTIONS

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Side:
    """One language of a fact: the ways customers ask, the answer, what the answer states."""

    questions: tuple[str, ...]
    answer: str
    facts: tuple[str, ...]


@dataclass(frozen=True)
class Fact:
    topic: str
    en: Side
    zh: Side


@dataclass(frozen=True)
class Conversation:
    lang: str
    turns: tuple[str, ...]
    """User, assistant, user, assistant, …: the last is the answer trained on."""
    facts: tuple[str, ...]


def side(questions: tuple[str, ...], answer: str, *facts: str) -> Side:
    return Side(questions, answer, facts)


SHOP_FACTS: tuple[Fact, ...] = (
    # ------------------------------------------------------------------ returns and refunds
    Fact(
        "return-window",
        side(
            (
                "How many days do I have to return something I don't want?",
                "Is there a no-questions-asked return period?",
                "I don't like the colour of the kettle I received. Can it still go back?",
            ),
            "Yes. You can return any item within 7 days of delivery without giving a reason, as "
            "long as the packaging is intact and all accessories, manuals and gifts are included.",
            "7 days",
            "packaging",
        ),
        side(
            (
                "不想要了，几天内可以退？",
                "你们有没有无理由退货？",
                "收到的插座用不上，能无理由退掉吗？",
            ),
            "可以。自签收之日起7天内支持无理由退货，包装需完好，配件、说明书和赠品需齐全。",
            "7天",
            "包装",
        ),
    ),
    Fact(
        "return-steps",
        side(
            (
                "What are the steps to send an item back?",
                "Where on the website do I start a return?",
                "How do I arrange a return?",
            ),
            "Go to My Orders, choose the order and select Request return; no-reason returns are "
            "approved straight away. Pack the item in its original packaging and send it with a "
            "tracked courier to our returns centre in Kunshan, with the return number written on "
            "the parcel.",
            "My Orders",
            "Request return",
            "return number",
        ),
        side(
            ("在哪里申请退货？", "退货流程是怎样的？", "东西要寄到哪里退？"),
            "进入“我的订单”，选择对应订单，点击“申请退货”，无理由退货会自动通过。把商品连同全部"
            "配件放回原包装，用可查询物流的快递寄到我们位于江苏昆山的退货中心，并在包裹上写明退货单号。",
            "我的订单",
            "申请退货",
            "退货单号",
        ),
    ),
    Fact(
        "return-earbuds-seal",
        side(
            (
                "I unsealed my earbuds but no longer want them. Can I return them without a reason?",
                "Are in-ear headphones covered by the 7-day no-reason return?",
            ),
            "In-ear headphones and earbuds whose hygiene seal has been broken cannot be returned "
            "without a reason. If they are faulty, you can still return or exchange them.",
            "hygiene seal",
            "faulty",
        ),
        side(
            ("入耳式耳机拆封了还能无理由退吗？", "真无线耳机封条撕了，还能七天无理由退货吗？"),
            "已拆开卫生封条的入耳式耳机和真无线耳机不支持无理由退货；如果有质量问题，仍可正常退换。",
            "卫生封条",
            "质量问题",
        ),
    ),
    Fact(
        "return-gift-cards",
        side(
            (
                "Can I return a gift card I bought?",
                "Is it possible to get a refund on an unused gift card?",
            ),
            "No. Gift cards cannot be returned or refunded, and they cannot be exchanged for cash.",
            "cannot be returned",
        ),
        side(
            ("礼品卡买了能退吗？", "没用过的礼品卡可以退款吗？"),
            "不可以。礼品卡不支持退货或退款，也不能兑换现金。",
            "不支持退货",
        ),
    ),
    Fact(
        "return-shipping-cost",
        side(
            ("Who covers the courier cost for a no-reason return?", "Is return shipping free?"),
            "For no-reason returns, you pay the return shipping; Gold members get a free courier "
            "pickup instead. If the product is faulty or we sent the wrong item, we book a free SF "
            "Express pickup for you.",
            "you pay the return shipping",
            "Gold",
            "free SF Express pickup",
        ),
        side(
            ("无理由退货的快递费要自己付吗？", "退回去的运费谁承担？"),
            "无理由退货的寄回运费由您自行承担，金卡会员可享受免费上门取件；如果是质量问题或发错货，"
            "我们会为您预约顺丰免费上门取件。",
            "自行承担",
            "金卡",
            "免费上门取件",
        ),
    ),
    Fact(
        "refund-time",
        side(
            (
                "Once you get my return, how soon is the money refunded?",
                "How many working days does a refund usually take?",
                "My return has reached your warehouse. When will I see the refund?",
            ),
            "After our returns centre has checked the item, the refund goes back to your original "
            "payment method and usually arrives within 3–5 working days, depending on your bank.",
            "3–5 working days",
            "original payment method",
        ),
        side(
            ("退款一般几个工作日到账？", "你们收到退货以后多久把钱退给我？"),
            "退货中心检验通过后，退款会原路退回您的支付账户，一般3–5个工作日到账，具体以银行处理时间为准。",
            "3–5个工作日",
            "原路退回",
        ),
    ),
    Fact(
        "return-inspection",
        side(
            (
                "How long does your returns centre take to check a returned item?",
                "After my parcel reaches the returns centre, how long is the inspection?",
            ),
            "Our returns centre checks each returned item within 2 working days of receiving it; "
            "the refund is then sent to your original payment method.",
            "2 working days",
        ),
        side(
            ("退货中心收到货后多久检验完？", "退回的商品要检查几天？"),
            "退货中心收到商品后，会在2个工作日内完成检验，检验通过后原路退款。",
            "2个工作日",
        ),
    ),
    Fact(
        "refund-gift-card-part",
        side(
            (
                "I paid part of my order with a gift card and I'm returning it. Where does that money go?",
                "If I return something I paid for with a gift card, do I get cash back?",
            ),
            "Any part paid with a gift card goes back to the gift card; the rest is refunded to "
            "your original payment method.",
            "back to the gift card",
        ),
        side(
            ("用礼品卡付的钱退货后退到哪里？", "礼品卡支付的订单退货，钱会退回礼品卡吗？"),
            "使用礼品卡支付的部分会退回礼品卡，其余部分原路退回您的支付账户。",
            "退回礼品卡",
        ),
    ),
    Fact(
        "refund-points",
        side(
            (
                "Do I get my points back if I return an order I used points on?",
                "What happens to the points from an order I return?",
            ),
            "Points you used on the order are returned to your account, and points you earned from "
            "the order are deducted.",
            "returned to your account",
            "deducted",
        ),
        side(
            ("退货后用掉的积分会退回来吗？", "订单退了，送的积分怎么办？"),
            "该订单使用的积分会退回您的账户，该订单获得的积分会被扣除。",
            "退回",
            "扣除",
        ),
    ),
    Fact(
        "refund-shipping-fee",
        side(
            (
                "Will you refund the delivery fee I paid when I return something?",
                "Is the original shipping charge refunded on a return?",
            ),
            "The original shipping fee is refunded only if the product was faulty or we sent the "
            "wrong item; for no-reason returns it is not refunded.",
            "faulty",
            "wrong item",
        ),
        side(
            ("退货的话原来付的运费退不退？", "退货时订单运费能一起退吗？"),
            "只有商品有质量问题或我们发错货时，才会退还原订单的运费；无理由退货不退运费。",
            "质量问题",
            "发错货",
        ),
    ),
    Fact(
        "faulty-first-week",
        side(
            (
                "The kettle I received five days ago won't heat up. Can I get my money back?",
                "Something I got this week is defective. What are my options?",
            ),
            "Within 7 days of delivery, a product with a quality problem can be returned for a full "
            "refund or exchanged for the same model. Send us a photo or short video of the fault; "
            "we pay the shipping both ways.",
            "7 days",
            "full refund",
            "exchange",
        ),
        side(
            ("刚收到三天的路由器就坏了，可以退款吗？", "签收没几天就发现有故障，怎么处理？"),
            "签收后7天内出现质量问题，可以选择全额退款或换一台同型号新品。请提供故障照片或短视频，"
            "往返运费由我们承担。",
            "7天",
            "全额退款",
            "换",
        ),
    ),
    Fact(
        "faulty-day-8-to-15",
        side(
            (
                "My router developed a fault twelve days after delivery. Can I swap it for a new one?",
                "What if a product breaks in the second week after it arrives?",
            ),
            "From day 8 to day 15 after delivery, we exchange a faulty product for a new unit of "
            "the same model, or repair it free of charge if you prefer. We cover the shipping both "
            "ways.",
            "day 15",
            "new unit",
        ),
        side(
            ("签收第12天智能插座坏了，还能换新吗？", "买了快两周出现质量问题，怎么办？"),
            "签收后第8天至第15天出现质量问题，可以为您更换同型号新品，也可以选择免费维修，往返运费由我们承担。",
            "第15天",
            "同型号新品",
        ),
    ),
    Fact(
        "faulty-after-15-days",
        side(
            (
                "A product stopped working a month after it arrived. Can I still exchange it?",
                "What happens if something breaks after the 15-day exchange period?",
            ),
            "After 15 days, faults are handled as free repairs under the warranty rather than "
            "exchanges.",
            "15 days",
            "warranty",
            "repair",
        ),
        side(
            ("收货一个多月了才坏，还能换新吗？", "超过15天出现故障怎么处理？"),
            "签收超过15天出现的故障，按保修政策免费维修，不再换新。",
            "15天",
            "保修",
            "维修",
        ),
    ),
    Fact(
        "wrong-or-missing-item",
        side(
            (
                "You sent me the wrong colour. What should I do?",
                "A cable is missing from my parcel. How do I report it?",
            ),
            "Please contact us within 48 hours of delivery with a photo of what you received, and "
            "we will send the right item at no extra cost.",
            "48 hours",
            "photo",
        ),
        side(
            ("发错货了怎么办？", "包裹里少了一根数据线，怎么处理？"),
            "请在签收后48小时内联系我们并附上收到商品的照片，我们会免费为您补发正确的商品。",
            "48小时",
            "照片",
        ),
    ),
    # ------------------------------------------------------------------ shipping
    Fact(
        "delivery-area",
        side(
            (
                "Which regions do you deliver to?",
                "Can you send an order to Singapore?",
                "Do you ship outside China?",
            ),
            "We deliver to every province of mainland China and to Hong Kong and Macau. We do not "
            "ship to other countries or regions at the moment.",
            "mainland China",
            "Hong Kong",
            "Macau",
        ),
        side(
            ("你们能寄到国外吗？", "配送范围包括哪些地方？", "可以寄到新加坡吗？"),
            "Lumen Home 可配送至中国大陆所有省份以及香港和澳门，目前暂不支持配送到其他国家或地区。",
            "中国大陆",
            "香港",
            "澳门",
        ),
    ),
    Fact(
        "dispatch-cutoff",
        side(
            (
                "If I pay at 11 am, will my order go out the same day?",
                "Do you dispatch orders on Sundays?",
                "What time do I need to pay by for same-day dispatch?",
            ),
            "Orders paid before 15:00 (3 pm, Beijing time) leave our warehouse the same day, seven "
            "days a week; orders paid later are dispatched the next day.",
            "15:00",
            "same day",
        ),
        side(
            ("上午十点付款今天能发货吗？", "星期天也发货吗？", "每天几点之前付款可以当天发？"),
            "每天15:00（北京时间）前付款的订单当天发货，周末也照常发货；15:00以后付款的订单次日发出。",
            "15:00",
            "当天",
        ),
    ),
    Fact(
        "spring-festival",
        side(
            (
                "Do you ship during Chinese New Year?",
                "Is the warehouse open over the Spring Festival holiday?",
            ),
            "Our warehouse closes for the Spring Festival holiday. Orders placed during the closure "
            "are dispatched when it reopens; the dates are announced on our home page every January.",
            "Spring Festival",
            "reopens",
            "January",
        ),
        side(
            ("春节期间还发货吗？", "过年放假仓库几号复工？"),
            "春节假期期间仓库放假，期间下的订单会在复工后依次发出，具体放假和复工日期每年1月在官网首页公布。",
            "春节",
            "复工",
            "1月",
        ),
    ),
    Fact(
        "standard-delivery-time",
        side(
            (
                "How many days does standard delivery take?",
                "Roughly how long is ZTO delivery once my parcel is sent?",
            ),
            "Standard delivery with ZTO Express takes 2–4 days after dispatch to most of mainland "
            "China.",
            "2–4 days",
        ),
        side(
            ("普通快递一般几天能到？", "中通发货后大概多久送达？"),
            "普通快递（中通快递）发货后2–4天送达大陆大部分地区。",
            "2–4天",
        ),
    ),
    Fact(
        "express-delivery",
        side(
            ("Do you have a faster delivery option?", "How quick is SF Express delivery?"),
            "Yes, express delivery with SF Express arrives 1–2 days after dispatch. It costs ¥20 "
            "per order and is free for Gold members.",
            "SF Express",
            "1–2 days",
            "¥20",
        ),
        side(
            ("有没有更快的快递？", "顺丰加急几天能到？"),
            "可以选择顺丰加急，发货后1–2天送达，每单运费20元，金卡会员免运费。",
            "顺丰",
            "1–2天",
            "20元",
        ),
    ),
    Fact(
        "standard-shipping-cost",
        side(
            (
                "What's the delivery charge on a small order?",
                "From what order value is delivery free?",
                "How much is postage for standard delivery?",
            ),
            "Standard delivery costs ¥10 per order and is free for orders of ¥99 or more (the "
            "amount after discounts).",
            "¥10",
            "¥99",
            "free",
        ),
        side(
            ("买多少钱包邮？", "普通快递运费多少？", "订单没满99元要付多少运费？"),
            "普通快递每单运费10元，订单实付金额满99元免运费。",
            "10元",
            "99元",
            "免运费",
        ),
    ),
    Fact(
        "remote-regions",
        side(
            (
                "How long does delivery to Qinghai take?",
                "Does free shipping over ¥99 apply in Inner Mongolia?",
                "Can I choose express delivery to Xinjiang?",
            ),
            "Xinjiang, Tibet, Qinghai and Inner Mongolia get standard delivery only, 5–8 days after "
            "dispatch. Shipping there costs a flat ¥25 per order; free shipping over ¥99 does not "
            "apply and express delivery is not available.",
            "5–8 days",
            "¥25",
        ),
        side(
            ("寄青海要几天？", "内蒙古满99元包邮吗？", "新疆能发顺丰吗？"),
            "新疆、西藏、青海和内蒙古仅支持普通快递，发货后5–8天送达，运费统一每单25元，不参加满99元"
            "包邮，也不支持顺丰加急。",
            "5–8天",
            "25元",
        ),
    ),
    Fact(
        "hong-kong-macau",
        side(
            (
                "What's the shipping fee to Macau?",
                "How many days does a parcel take to reach Hong Kong?",
            ),
            "Orders to Hong Kong and Macau go with SF Express and arrive 3–5 days after dispatch. "
            "Shipping costs a flat ¥45 per order, whatever the order value.",
            "SF Express",
            "3–5 days",
            "¥45",
        ),
        side(
            ("寄香港运费多少？", "发到澳门要几天？"),
            "寄往香港和澳门统一使用顺丰速运，发货后3–5天送达，运费统一每单45元，与订单金额无关。",
            "顺丰",
            "3–5天",
            "45元",
        ),
    ),
    Fact(
        "plug-adapter",
        side(
            (
                "Does the smart plug fit the sockets in Macau?",
                "Are your kettles sold with Hong Kong plugs?",
            ),
            "Our kettles and smart plugs come with mainland China plugs. Hong Kong and Macau use a "
            "different socket type, so you will need a plug adapter.",
            "adapter",
        ),
        side(
            ("在香港用你们的电水壶需要转换插头吗？", "智能插座在澳门能直接插吗？"),
            "我们的电水壶和智能插座都是中国大陆标准插头，香港和澳门的插座规格不同，需要自备转换插头。",
            "转换插头",
        ),
    ),
    Fact(
        "tracking",
        side(
            ("How can I follow my parcel?", "Where do I find my tracking number?"),
            "As soon as your order is dispatched, we send you a text message and an email with the "
            "tracking number. You can follow the parcel under My Orders on our website or in the "
            "Lumen Home app, or send the chat assistant your 8-digit order number.",
            "tracking number",
            "My Orders",
        ),
        side(
            ("怎么查物流？", "快递单号在哪里看？"),
            "订单发出后，我们会通过短信和邮件把快递单号发给您。您可以在官网或 Lumen Home App 的“我的订单”"
            "中查看物流，也可以把8位订单号发给在线客服助手查询。",
            "快递单号",
            "我的订单",
        ),
    ),
    Fact(
        "missed-delivery",
        side(
            (
                "What happens if I'm not home when the courier comes?",
                "I missed the delivery. Will they come back?",
            ),
            "The courier tries again the next day or, if you agree, leaves the parcel at a pickup "
            "station or parcel locker.",
            "next day",
            "parcel locker",
        ),
        side(
            ("快递来的时候家里没人怎么办？", "错过派送了还会再送吗？"),
            "快递员会在第二天再次派送；经您同意，也可以放到驿站或快递柜。",
            "第二天",
            "快递柜",
        ),
    ),
    Fact(
        "damaged-parcel",
        side(
            (
                "The box arrived badly dented. Should I accept it?",
                "I opened my parcel and the kettle is damaged. What do I do?",
            ),
            "If the box is badly damaged, you can refuse it. If you only find damage after opening "
            "it, send us photos of the box and the product within 48 hours of delivery and we will "
            "send a replacement free of charge.",
            "48 hours",
            "photos",
            "replacement",
        ),
        side(
            ("外箱压坏了能拒收吗？", "拆开发现水壶有磕碰，怎么办？"),
            "外箱破损严重的可以直接拒收；如果拆开后才发现商品损坏，请在签收后48小时内把外箱和商品的照片"
            "发给我们，我们会免费补发一件新的。",
            "拒收",
            "48小时",
            "照片",
        ),
    ),
    Fact(
        "customer-service",
        side(
            ("When can I reach a real person?", "What's your customer service phone number?"),
            "Our customer service team is available 9:00–21:00 every day: email "
            "support@lumenhome.example or call 400-800-1234.",
            "9:00–21:00",
            "support@lumenhome.example",
            "400-800-1234",
        ),
        side(
            ("人工客服什么时间在线？", "客服电话是多少？"),
            "客服时间为每天9:00–21:00，邮箱 support@lumenhome.example，电话 400-800-1234。",
            "9:00–21:00",
            "support@lumenhome.example",
            "400-800-1234",
        ),
    ),
    # ------------------------------------------------------------------ payment and invoices
    Fact(
        "payment-methods",
        side(
            (
                "Which ways of paying do you support?",
                "Can I pay with Visa?",
                "Is cash on delivery available?",
            ),
            "We accept Alipay, WeChat Pay, UnionPay cards, Visa and Mastercard credit cards, and "
            "Lumen Home gift cards. Cash on delivery is not available.",
            "Alipay",
            "Visa",
            "Cash on delivery is not available",
        ),
        side(
            ("能用支付宝付款吗？", "可以货到付款吗？", "付款方式有哪些？"),
            "我们支持支付宝、微信支付、银联卡、Visa 和 Mastercard 信用卡，以及 Lumen Home 礼品卡。"
            "暂不支持货到付款。",
            "支付宝",
            "微信支付",
            "暂不支持货到付款",
        ),
    ),
    Fact(
        "prices-currency",
        side(
            ("Are your prices in yuan?", "Is VAT included in the price?"),
            "All prices are in Chinese yuan (CNY) and include VAT.",
            "CNY",
            "VAT",
        ),
        side(
            ("价格含税吗？", "标价是人民币吗？"),
            "所有商品均以人民币标价，价格已含增值税。",
            "人民币",
            "增值税",
        ),
    ),
    Fact(
        "unpaid-orders",
        side(
            (
                "How long do I have to pay after placing an order?",
                "Why was my unpaid order cancelled?",
            ),
            "Please pay within 30 minutes of placing your order; unpaid orders are cancelled "
            "automatically after 30 minutes.",
            "30 minutes",
        ),
        side(
            ("下单后多久必须付款？", "没付款的订单怎么自动取消了？"),
            "下单后请在30分钟内完成付款，超过30分钟未付款的订单会被系统自动取消。",
            "30分钟",
        ),
    ),
    Fact(
        "instalments",
        side(
            ("Do you offer payment in instalments?", "Are Huabei instalments interest-free?"),
            "Orders of ¥300 or more can be paid in 3, 6 or 12 monthly instalments with Alipay "
            "Huabei. 3 and 6 instalments are interest-free; 12 instalments carry Huabei's standard "
            "service fee.",
            "Huabei",
            "¥300",
            "interest-free",
        ),
        side(
            ("可以花呗分期吗？", "分12期有手续费吗？"),
            "订单满300元可以使用支付宝花呗分3期、6期或12期，3期和6期免息，12期按花呗标准收取服务费。",
            "花呗",
            "300元",
            "免息",
        ),
    ),
    Fact(
        "invoices",
        side(
            (
                "Do you issue fapiao?",
                "When will I receive my electronic invoice?",
                "Can I request an invoice after delivery?",
            ),
            "Yes, we issue electronic general VAT invoices (fapiao). Ask for one at checkout or "
            "under My Orders up to 90 days after delivery; it is issued within 3 working days after "
            "delivery and emailed to you.",
            "90 days",
            "3 working days",
            "My Orders",
        ),
        side(
            ("可以开发票吗？", "电子发票什么时候能收到？", "收货后还能补开发票吗？"),
            "可以，我们开具增值税电子普通发票。下单时或签收后90天内都可以在“我的订单”中申请，"
            "发票在签收后3个工作日内开具并发送到您的邮箱。",
            "90天",
            "3个工作日",
            "我的订单",
        ),
    ),
    Fact(
        "special-vat-invoice",
        side(
            (
                "What information do you need for a special VAT invoice?",
                "How long does a special VAT invoice take?",
            ),
            "For a special VAT invoice, give us the company name, taxpayer ID, registered address "
            "and phone number, bank name and account number. It is issued within 5 working days "
            "after delivery.",
            "taxpayer ID",
            "bank",
            "5 working days",
        ),
        side(
            ("开增值税专用发票要提供什么？", "专票多久能开出来？"),
            "增值税专用发票需要提供公司名称、纳税人识别号、注册地址和电话、开户行及银行账号，在签收后5个"
            "工作日内开具。",
            "纳税人识别号",
            "开户行",
            "5个工作日",
        ),
    ),
    Fact(
        "invoice-amount",
        side(
            (
                "Does the invoice include the discount from my coupon?",
                "Why is my invoice lower than the order total?",
            ),
            "The invoice shows the amount you actually paid. Discounts from points and coupons are "
            "not invoiced, and any part paid with a gift card is not invoiced again, because gift "
            "cards are invoiced when they are bought.",
            "actually paid",
            "not invoiced",
        ),
        side(
            ("发票金额为什么比订单金额少？", "用了优惠券的部分能开票吗？"),
            "发票金额为您的实际支付金额，积分抵扣和优惠券减免的部分不开票；礼品卡支付的部分也不重复开票，"
            "因为礼品卡在购买时已经开过发票。",
            "实际支付金额",
            "不开票",
        ),
    ),
    Fact(
        "invoice-reissue",
        side(
            ("There's a mistake on my invoice. Can you fix it?", "Can an invoice be reissued?"),
            "Yes. If the invoice details were wrong, we can reissue it once, up to 90 days after "
            "delivery.",
            "once",
            "90 days",
        ),
        side(
            ("发票信息填错了怎么办？", "发票可以重开几次？"),
            "发票信息有误的，签收后90天内可以重开一次。",
            "一次",
            "90天",
        ),
    ),
    Fact(
        "gift-card-values",
        side(
            ("What values do gift cards come in?", "How do I receive a gift card I bought?"),
            "Lumen Home gift cards are electronic and come in ¥100, ¥200, ¥500 and ¥1,000. The "
            "buyer or the recipient receives a 16-character code by email.",
            "¥100",
            "¥1,000",
            "16-character code",
        ),
        side(
            ("礼品卡有哪些面值？", "买的礼品卡怎么发给我？"),
            "Lumen Home 礼品卡为电子卡，面值有100元、200元、500元和1000元，购买人或收卡人会通过邮件收到"
            "一个16位卡密。",
            "100元",
            "1000元",
            "16位卡密",
        ),
    ),
    Fact(
        "gift-card-use",
        side(
            (
                "Where do I add a gift card code to my account?",
                "Can I combine a gift card with WeChat Pay?",
            ),
            "Add the 16-character code under My Gift Cards; the balance can then be used at "
            "checkout, on its own or together with another payment method.",
            "My Gift Cards",
            "checkout",
        ),
        side(
            ("礼品卡能和微信支付一起用吗？", "礼品卡卡密在哪添加？"),
            "在“我的礼品卡”中添加16位卡密，结算时即可使用余额，可以单独支付，也可以和其他支付方式组合使用。",
            "我的礼品卡",
            "结算",
        ),
    ),
    Fact(
        "gift-card-rules",
        side(
            ("How long is a gift card valid?", "Can I top up my gift card?"),
            "Gift cards are valid for 3 years from the date of purchase. They cannot be exchanged "
            "for cash, topped up or refunded, and cannot be used to buy other gift cards.",
            "3 years",
        ),
        side(
            ("礼品卡有效期多久？", "礼品卡可以充值吗？"),
            "礼品卡自购买之日起3年内有效，不能兑换现金、不能充值、不能退款，也不能用来购买其他礼品卡。",
            "3年",
        ),
    ),
    # ------------------------------------------------------------------ membership and points
    Fact(
        "membership-levels",
        side(
            (
                "How do I become a Gold member?",
                "Is membership free?",
                "How long does Gold status last?",
            ),
            "Everyone with a Lumen Home account is a Silver member for free. You become Gold when "
            "you spend ¥2,000 or more within 12 months, and Gold status then lasts for the next 12 "
            "months.",
            "¥2,000",
            "12 months",
        ),
        side(
            ("怎么升级金卡会员？", "注册会员要钱吗？", "金卡会员有效期多久？"),
            "注册 Lumen Home 账号即可免费成为银卡会员。12个月内累计消费满2000元即可升级为金卡会员，"
            "金卡资格有效期为之后的12个月。",
            "2000元",
            "12个月",
        ),
    ),
    Fact(
        "gold-benefits",
        side(
            ("What do Gold members get?", "What are the perks of Gold membership?"),
            "Gold members get double points on every order, free SF Express delivery on every order "
            "and a free courier pickup for no-reason returns.",
            "double points",
            "SF Express",
            "pickup",
        ),
        side(
            ("金卡会员有什么权益？", "金卡有哪些好处？"),
            "金卡会员享有每笔订单双倍积分、所有订单免费顺丰加急配送，以及无理由退货免费上门取件。",
            "双倍积分",
            "顺丰",
            "上门取件",
        ),
    ),
    Fact(
        "earning-points",
        side(
            (
                "How many points do I get per yuan?",
                "Do I earn points on shipping fees?",
                "When do the points from an order show up?",
            ),
            "You earn 1 point for every ¥1 you actually pay for products; shipping fees and gift "
            "card purchases earn no points. Points are added 7 days after delivery, once the return "
            "period has ended.",
            "1 point",
            "7 days after delivery",
        ),
        side(
            ("消费1元积几分？", "运费能积分吗？", "订单的积分什么时候到账？"),
            "商品实际支付金额每1元积1分，运费和购买礼品卡不积分。积分在签收7天后（退货期结束后）发放到账户。",
            "1分",
            "签收7天后",
        ),
    ),
    Fact(
        "using-points",
        side(
            ("How much are 100 points worth?", "Is there a limit on paying with points?"),
            "At checkout, 100 points are worth ¥1. Points can pay for up to 20% of the order amount "
            "and are used in steps of 100 points.",
            "100 points",
            "¥1",
            "20%",
        ),
        side(
            ("积分抵扣有上限吗？", "100积分能抵多少钱？"),
            "结算时100积分可抵1元，积分最多可抵扣订单金额的20%，以100积分为单位使用。",
            "100积分",
            "1元",
            "20%",
        ),
    ),
    Fact(
        "points-expiry",
        side(
            ("Do my points expire?", "When will the points I earned this year run out?"),
            "Points expire on 31 December of the year after the one in which you earned them; for "
            "example, points earned in 2026 expire on 31 December 2027. You can see your balance and "
            "expiry dates under My Points.",
            "31 December",
            "My Points",
        ),
        side(
            ("积分有有效期吗？", "今年攒的积分什么时候过期？"),
            "积分在获得年度的次年12月31日过期，例如2026年获得的积分将于2027年12月31日过期。积分余额和"
            "到期时间可以在“我的积分”中查看。",
            "次年12月31日",
            "我的积分",
        ),
    ),
    Fact(
        "price-protection",
        side(
            (
                "Something I bought went down in price. Do you refund the difference?",
                "How many days does price protection cover?",
                "How do I apply for price protection?",
            ),
            "Yes. If the price of a product you bought drops on Lumen Home within 10 days of your "
            "payment, we refund the difference. Apply under My Orders by selecting Price protection; "
            "the difference goes back to your original payment method within 3 working days.",
            "10 days",
            "difference",
            "Price protection",
        ),
        side(
            ("买完降价了能退差价吗？", "价保期是几天？", "在哪里申请价保？"),
            "可以。付款后10天内，如果您购买的商品在 Lumen Home 降价，我们会退还差价。请在“我的订单”中点击"
            "“申请价保”，差价会在3个工作日内原路退回。",
            "10天",
            "差价",
            "申请价保",
        ),
    ),
    Fact(
        "price-protection-exclusions",
        side(
            (
                "Does price protection apply to flash sale items?",
                "Can I claim price protection twice on the same product?",
            ),
            "Price protection does not apply to flash sale and clearance items, gift cards, lower "
            "prices that come only from coupons, points or bundle offers, or products you have "
            "already returned. Each product can be price-protected once.",
            "flash sale",
            "once",
        ),
        side(
            ("清仓商品有价保吗？", "同一件商品能申请几次价保？"),
            "限时秒杀和清仓商品、礼品卡、仅因使用优惠券、积分或套装优惠而更低的价格，以及已经退货的商品，"
            "都不参与价格保护。每件商品只能申请一次价保。",
            "秒杀",
            "清仓",
            "一次",
        ),
    ),
    # ------------------------------------------------------------------ orders
    Fact(
        "cancel-order",
        side(
            (
                "Can I still cancel if my order hasn't shipped?",
                "My order has already been sent out. Can I cancel it?",
                "Is there a fee for cancelling?",
            ),
            "You can cancel free of charge before the order ships: open My Orders and select Cancel "
            "order, and the full amount is refunded to your original payment method. Once it has "
            "shipped it can no longer be cancelled, but you can refuse the parcel or return it "
            "within 7 days of delivery.",
            "before the order ships",
            "Cancel order",
            "refuse",
        ),
        side(
            ("还没发货的订单怎么取消？", "已经发货了还能取消吗？", "取消订单要收费吗？"),
            "订单发货前可以在“我的订单”中点击“取消订单”免费取消，款项全额原路退回。订单发出后无法取消，"
            "您可以拒收包裹，或签收后7天内申请无理由退货。",
            "发货前",
            "取消订单",
            "拒收",
        ),
    ),
    Fact(
        "change-order",
        side(
            (
                "Can I update the delivery address after paying?",
                "I'd like a different size of what I ordered. Can you change it?",
            ),
            "You can change the delivery address under My Orders as long as the order has not "
            "shipped. To change the product, size or colour, cancel the order (free before it "
            "ships) and place a new one.",
            "My Orders",
            "cancel",
            "new one",
        ),
        side(
            ("付款后还能改收货地址吗？", "下单后想换个型号可以吗？"),
            "订单发货前可以在“我的订单”中修改收货地址。如需更换商品、规格或颜色，请先取消订单"
            "（发货前免费取消）再重新下单。",
            "发货前",
            "地址",
            "重新下单",
        ),
    ),
    # ------------------------------------------------------------------ product help
    Fact(
        "router-reset",
        side(
            (
                "What's the way to restore factory settings on the Lumen router?",
                "Where is the reset button on the router and how long do I hold it?",
                "How do I reset a Mesh M2 unit?",
            ),
            "Hold the RESET button on the back of the router for 5 seconds until the light flashes. "
            "It restarts with its factory settings in about 2 minutes; the same applies to each "
            "Mesh M2 unit.",
            "RESET",
            "5 seconds",
            "flashes",
        ),
        side(
            (
                "Lumen路由器的复位键要按多久？",
                "Mesh M2 节点怎么重置？",
                "路由器想恢复默认设置该怎么操作？",
            ),
            "按住路由器背面的RESET键5秒，直到指示灯闪烁，路由器会在大约2分钟后以出厂设置重启。Mesh M2 "
            "的每个节点也用同样的方法重置。",
            "RESET",
            "5秒",
            "闪烁",
        ),
    ),
    Fact(
        "router-after-reset",
        side(
            (
                "What's the Wi-Fi password after a factory reset?",
                "Does resetting the router delete my settings?",
            ),
            "Resetting erases your own Wi-Fi name, password and settings. Afterwards the router uses "
            "the default Wi-Fi name and password printed on the label on its bottom.",
            "label",
            "bottom",
        ),
        side(
            ("重置后路由器的Wi-Fi密码是什么？", "恢复出厂后我的设置还在吗？"),
            "重置会清除您自己设置的Wi-Fi名称、密码和其他设置，之后路由器使用底部标签上印的默认Wi-Fi名称和密码。",
            "标签",
            "默认",
        ),
    ),
    Fact(
        "router-setup",
        side(
            (
                "How do I open the router's admin page?",
                "Do I need to update the router firmware myself?",
            ),
            "Set up the router with the Lumen Home app, or open http://192.168.10.1 in a browser "
            "while connected to its Wi-Fi. The router installs firmware updates automatically at "
            "3:00 every night, so you do not need to update it yourself.",
            "192.168.10.1",
            "3:00",
        ),
        side(
            ("路由器管理页面的地址是什么？", "路由器固件需要手动升级吗？"),
            "可以用 Lumen Home App 设置路由器，也可以连接路由器Wi-Fi后用浏览器打开 http://192.168.10.1。"
            "路由器每晚凌晨3:00自动安装固件更新，无需手动升级。",
            "192.168.10.1",
            "3:00",
        ),
    ),
    Fact(
        "pair-aura",
        side(
            (
                "How do I put the Lumen Aura into pairing mode?",
                "How do I connect my Aura headphones to my laptop?",
            ),
            "With the Lumen Aura switched off, hold the power button for 3 seconds until the light "
            'flashes blue and white, then choose "Lumen Aura" in your device\'s Bluetooth settings.',
            "3 seconds",
            "blue and white",
            "Bluetooth",
        ),
        side(
            ("Lumen Aura 头戴耳机怎么进入配对？", "Aura 耳机怎么连电脑蓝牙？"),
            "在 Lumen Aura 关机状态下长按电源键3秒，直到指示灯蓝白交替闪烁，然后在设备的蓝牙设置中选择"
            "“Lumen Aura”。",
            "3秒",
            "蓝白",
            "蓝牙",
        ),
    ),
    Fact(
        "pair-buds-air",
        side(
            (
                "How do I pair the Lumen Buds Air with a new phone?",
                "How long do I hold the Buds Air case button to start pairing?",
            ),
            "Put both earbuds in the charging case, open the lid and hold the case button for 3 "
            'seconds until the light flashes white. Then choose "Lumen Buds Air" in your Bluetooth '
            "settings.",
            "3 seconds",
            "flashes white",
            "Bluetooth",
        ),
        side(
            ("Buds Air 要怎么和新手机配对？", "真无线耳机的充电盒按键要按几秒才能配对？"),
            "把两只耳机放进充电盒，打开盒盖，长按充电盒上的按键3秒，直到指示灯白色闪烁，然后在蓝牙设置中"
            "选择“Lumen Buds Air”。",
            "3秒",
            "白色闪烁",
            "蓝牙",
        ),
    ),
    Fact(
        "headphones-wont-connect",
        side(
            (
                "My Aura headphones won't connect any more. What should I try?",
                "How do I reset the Buds Air?",
            ),
            "First forget the headphones in your phone's Bluetooth settings, then reset them and "
            "pair again: for Lumen Aura, hold the power and volume-down buttons together for 10 "
            "seconds; for Lumen Buds Air, with the earbuds in the open case, hold the case button "
            "for 10 seconds until the light flashes orange.",
            "forget",
            "10 seconds",
        ),
        side(
            ("耳机突然连不上手机了怎么办？", "Buds Air 怎么重置？"),
            "先在手机蓝牙设置中删除（忽略）该耳机，再重置后重新配对：Lumen Aura 同时按住电源键和音量减键"
            "10秒；Lumen Buds Air 放在打开的充电盒中，长按充电盒按键10秒，直到指示灯橙色闪烁。",
            "删除",
            "10秒",
        ),
    ),
    Fact(
        "kettle-descaling",
        side(
            (
                "How do I get limescale out of the K1 kettle?",
                "How often should I descale my kettle?",
            ),
            "In hard-water areas, descale the Lumen Kettle K1 about every 4 weeks: fill it with 1 "
            "litre of water and 2 tablespoons of citric acid (or 100 ml of white vinegar), bring it "
            "to the boil and leave it for 30 minutes. Pour it away, then boil fresh water twice and "
            "throw that away too.",
            "citric acid",
            "4 weeks",
            "30 minutes",
        ),
        side(
            ("K1电水壶怎么除水垢？", "电水壶多久除一次垢？"),
            "水质较硬的地区建议大约每4周除一次水垢：加入1升水和2勺柠檬酸（或100毫升白醋），烧开后静置"
            "30分钟，倒掉后再用清水烧两遍，烧过的水也倒掉。",
            "柠檬酸",
            "4周",
            "30分钟",
        ),
    ),
    Fact(
        "kettle-safety",
        side(
            ("Does the K1 kettle turn itself off?", "Can I put the kettle in the dishwasher?"),
            "The K1 switches itself off when the water boils and has dry-boil protection. Never put "
            "the kettle or its base in water or in a dishwasher.",
            "switches itself off",
            "dry-boil",
            "dishwasher",
        ),
        side(
            ("K1水开了会自动断电吗？", "电水壶能放洗碗机洗吗？"),
            "K1 水烧开后会自动断电，并带有防干烧保护。请勿将水壶或底座浸入水中，也不要放进洗碗机。",
            "自动断电",
            "防干烧",
            "洗碗机",
        ),
    ),
    Fact(
        "smart-plug-wifi",
        side(
            (
                "Does the Smart Plug P1 support 5 GHz Wi-Fi?",
                "Why can't my smart plug see my 5G network?",
            ),
            "The Lumen Smart Plug P1 works with 2.4 GHz Wi-Fi only and cannot join a 5 GHz network. "
            "Set it up in the Lumen Home app.",
            "2.4 GHz",
        ),
        side(
            ("智能插座P1支持5G频段吗？", "插座为什么搜不到我家的5G网络？"),
            "Lumen 智能插座 P1 仅支持2.4GHz Wi-Fi，无法连接5GHz网络，请在 Lumen Home App 中用2.4GHz网络进行设置。",
            "2.4GHz",
        ),
    ),
    Fact(
        "smart-plug-load",
        side(
            (
                "What's the maximum load of the smart plug?",
                "Can I run an electric heater on the P1?",
            ),
            "The maximum load is 10 A (2,500 W), so do not use it with appliances that draw more, "
            "such as large heaters.",
            "10 A",
            "2,500 W",
        ),
        side(
            ("智能插座最大功率多少？", "取暖器能接智能插座吗？"),
            "智能插座 P1 最大负载为10A（2500W），请勿连接功率更大的电器，例如大功率取暖器。",
            "10A",
            "2500W",
        ),
    ),
    Fact(
        "smart-plug-reset",
        side(
            (
                "How do I reset the Lumen smart plug?",
                "How long do I press the button on the P1 to reset it?",
            ),
            "Hold the smart plug's button for 6 seconds until the light blinks quickly; it is then "
            "ready to be set up again in the app.",
            "6 seconds",
            "blinks quickly",
        ),
        side(
            ("智能插座怎么重置？", "P1插座按键要长按几秒才能重置？"),
            "长按智能插座上的按键6秒，直到指示灯快速闪烁，之后即可在App中重新添加。",
            "6秒",
            "快速闪烁",
        ),
    ),
    # ------------------------------------------------------------------ warranty and repairs
    Fact(
        "warranty-routers",
        side(
            (
                "How long is the warranty on a Lumen router?",
                "Is the Mesh system covered for two years?",
            ),
            "Wi-Fi routers and Mesh systems are under warranty for 2 years from the day they were "
            "delivered.",
            "2 years",
        ),
        side(
            ("路由器保修几年？", "Mesh 组网系统的保修期是多久？"),
            "Wi-Fi 路由器和 Mesh 组网系统保修2年，自签收之日起计算。",
            "2年",
        ),
    ),
    Fact(
        "warranty-kettles",
        side(
            (
                "What's the guarantee period for the K1 kettle?",
                "Are kitchen appliances covered for a year?",
            ),
            "Kettles and other kitchen appliances are under warranty for 1 year from the day they "
            "were delivered.",
            "1 year",
        ),
        side(
            ("K1电水壶的保修期多久？", "厨房电器保修几年？"),
            "电水壶等厨房电器保修1年，自签收之日起计算。",
            "1年",
        ),
    ),
    Fact(
        "warranty-plugs-accessories",
        side(
            (
                "How long are smart plugs covered by warranty?",
                "What warranty do cables and chargers have?",
            ),
            "Smart plugs and other smart-home devices have a 1 year warranty from delivery; cables, "
            "chargers and other accessories have 3 months.",
            "1 year",
            "3 months",
        ),
        side(
            ("智能插座保修多久？", "数据线和充电器有保修吗？"),
            "智能插座等智能家居设备保修1年，数据线、充电器等配件保修3个月，均自签收之日起计算。",
            "1年",
            "3个月",
        ),
    ),
    Fact(
        "warranty-headphones",
        side(
            (
                "How long is the warranty on Lumen headphones?",
                "Is the earbuds' charging case covered as long as the earbuds?",
            ),
            "Headphones and earbuds are under warranty for 1 year; their built-in battery and the "
            "charging case for 6 months.",
            "1 year",
            "6 months",
        ),
        side(
            ("耳机保修多长时间？", "耳机电池保修多久？"),
            "头戴式耳机和真无线耳机保修1年；内置电池和充电盒保修6个月。",
            "1年",
            "6个月",
        ),
    ),
    Fact(
        "warranty-proof",
        side(
            (
                "Do I need a receipt for a warranty claim?",
                "I received a router as a present. Is it still under warranty?",
            ),
            "Your order number is your proof of purchase; no paper receipt is needed. The warranty "
            "stays with the product, so someone who received it as a gift can use the buyer's order "
            "number.",
            "order number",
            "receipt",
        ),
        side(
            ("保修需要小票吗？", "朋友送的路由器能保修吗？"),
            "订单号即购买凭证，不需要纸质发票或小票。保修跟随商品，收礼人也可以凭送礼人的订单号享受保修。",
            "订单号",
            "购买凭证",
        ),
    ),
    Fact(
        "warranty-exclusions",
        side(
            (
                "Does the warranty cover water damage?",
                "I dropped my earbuds and one of them cracked. Is that covered?",
                "Does third-party firmware on the router affect the warranty?",
            ),
            "The warranty covers manufacturing defects and faults in normal use. It does not cover "
            "physical damage such as drops or cracks, water or other liquid damage, repairs or "
            "modifications not made by Lumen Home (including unofficial router firmware), or normal "
            "wear and tear.",
            "does not cover",
            "water",
            "firmware",
        ),
        side(
            (
                "耳机进水了保修吗？",
                "摔坏的东西在保修范围内吗？",
                "路由器刷了第三方固件还能保修吗？",
            ),
            "保修范围是产品本身的制造缺陷和正常使用中出现的故障。摔落、开裂等人为损坏、进水或液体损坏、"
            "非 Lumen Home 进行的维修或改装（包括给路由器刷第三方固件）以及正常磨损都不在保修范围内。",
            "不在保修范围内",
            "进水",
            "第三方固件",
        ),
    ),
    Fact(
        "warranty-repair",
        side(
            (
                "How do I get something repaired under warranty?",
                "What is an RMA number and how do I get one?",
            ),
            "Contact customer service with your order number, a short description and a photo or "
            "video of the fault. Within 1 working day we give you a repair (RMA) number and book a "
            "free SF Express pickup; write the RMA number on the box. The repair takes 5–7 working "
            "days from when we receive the product, and we send it back free of charge.",
            "RMA",
            "SF Express",
            "5–7 working days",
        ),
        side(
            ("保修期内怎么申请维修？", "返修单号是什么，怎么拿到？"),
            "请通过在线客服、邮件或电话联系我们，提供订单号、故障描述和故障照片或视频。我们会在1个工作日内"
            "确认并给您返修单号（RMA号），为您预约顺丰免费上门取件，请在箱子上写明返修单号。收到商品后5–7个"
            "工作日内修好并免费寄回。",
            "返修单号",
            "顺丰",
            "5–7个工作日",
        ),
    ),
    Fact(
        "warranty-replacement",
        side(
            ("What if my product can't be repaired?", "Are repaired parts covered by a warranty?"),
            "If a product cannot be repaired, we replace it with the same model or, if that is no "
            "longer sold, an equivalent one. Repaired parts are guaranteed for 90 days or for the "
            "rest of the original warranty, whichever is longer.",
            "same model",
            "90 days",
        ),
        side(
            ("修不好怎么办？", "维修过的零件还保修吗？"),
            "商品无法修复的，我们会更换同型号产品；如该型号已停售，则更换同等档次的产品。维修更换的部件享受"
            "90天保修，或原保修期的剩余时间，以较长者为准。",
            "同型号",
            "90天",
        ),
    ),
    Fact(
        "out-of-warranty",
        side(
            (
                "Do you repair products whose warranty has expired?",
                "How much is the inspection fee for an out-of-warranty repair?",
            ),
            "Yes, we can repair most products after the warranty has ended. There is a ¥30 "
            "inspection fee, waived if you go ahead with the repair; we send you a quote first and "
            "repair nothing without your approval. You pay the shipping both ways, and repaired "
            "parts are guaranteed for 90 days.",
            "¥30",
            "inspection fee",
            "quote",
        ),
        side(
            ("过了保修期还能修吗？", "过保维修检测费多少钱？"),
            "过了保修期，大部分商品仍可维修。我们收取30元检测费，确认维修则免收；维修前会先报价，未经您同意"
            "不会维修。往返运费由您承担，维修部件享受90天保修。",
            "30元",
            "检测费",
            "报价",
        ),
    ),
)

HELPDESK_FACTS: tuple[Fact, ...] = (
    Fact(
        "netid-password",
        side(
            (
                "I can't remember my NetID password. Where do I reset it?",
                "Can the service desk reset my password over the phone?",
            ),
            "Reset your NetID password yourself at password.northfield.example, confirming your "
            "identity with multi-factor authentication (MFA). Without MFA, come to the IT Service "
            "Desk with your card or passport; for security reasons passwords are never reset over "
            "the phone or by email.",
            "password.northfield.example",
            "MFA",
        ),
        side(
            ("NetID密码忘了在哪重置？", "可以打电话让IT帮我重置密码吗？"),
            "请在 password.northfield.example 自助重置 NetID 密码，需要通过多因素认证（MFA）验证身份。"
            "无法使用 MFA 的，请本人携带证件到IT服务台办理；出于安全考虑，不能通过电话或邮件重置密码。",
            "password.northfield.example",
            "MFA",
        ),
    ),
    Fact(
        "eduroam",
        side(
            ("What are the login details for eduroam?", "How many devices can I have on eduroam?"),
            "Sign in to eduroam with your NetID followed by @northfield.example (for example "
            "ab1234@northfield.example) and your NetID password. Up to 5 devices can be connected "
            "at the same time.",
            "ab1234@northfield.example",
            "5 devices",
        ),
        side(
            ("eduroam 的账号密码怎么填？", "eduroam 最多能连几台设备？"),
            "用户名填写 NetID 加 @northfield.example（例如 ab1234@northfield.example），密码是 NetID "
            "密码，最多可以同时连接5台设备。",
            "ab1234@northfield.example",
            "5台",
        ),
    ),
    Fact(
        "vpn",
        side(
            ("Where do I download the university VPN?", "Do I need the VPN while I'm on campus?"),
            "Download the Northfield VPN client from software.northfield.example, connect to "
            "vpn.northfield.example and sign in with your NetID, password and MFA. You only need it "
            "off campus, to reach internal services; on campus you never need it.",
            "software.northfield.example",
            "vpn.northfield.example",
        ),
        side(
            ("学校VPN客户端在哪下载？", "在校园里要开VPN吗？"),
            "从 software.northfield.example 下载 Northfield VPN 客户端，服务器地址填 vpn.northfield.example，"
            "用 NetID、密码和 MFA 登录。只有在校外访问校内系统时才需要 VPN，在校园内不需要。",
            "software.northfield.example",
            "vpn.northfield.example",
        ),
    ),
    Fact(
        "print-credits",
        side(
            (
                "How many pages can I print for free each semester?",
                "Do unused free print credits roll over?",
            ),
            "Every student gets 200 free print credits at the start of each semester, and unused "
            "free credits do not carry over. Black-and-white A4 costs 1 credit per side and colour "
            "A4 5 credits.",
            "200",
            "do not carry over",
        ),
        side(
            ("免费打印额度用不完能留到下学期吗？", "每学期送多少打印点数？"),
            "每位学生每学期开学时获得200点免费打印额度，未用完的免费额度不会结转到下学期。A4黑白每面1点，"
            "彩色每面5点。",
            "200点",
            "不会结转",
        ),
    ),
    Fact(
        "mailbox",
        side(
            (
                "How much storage does a student mailbox have?",
                "What is the size limit for email attachments?",
            ),
            "Student mailboxes hold 50 GB (staff 100 GB). One email can carry up to 25 MB of "
            "attachments; share larger files from Northfield Drive, where you have 1 TB.",
            "50 GB",
            "25 MB",
        ),
        side(
            ("学生邮箱空间有多大？", "邮件附件最大能发多大？"),
            "学生邮箱容量为50GB（教职工100GB）。每封邮件的附件总计最多25MB，更大的文件请上传到 Northfield "
            "Drive（每人1TB）后发送共享链接。",
            "50GB",
            "25MB",
        ),
    ),
    Fact(
        "lab-hours",
        side(
            (
                "What are the Library lab opening hours at the weekend?",
                "Is the Engineering lab open on Saturdays?",
            ),
            "The Library lab is open Monday to Friday 8:00–22:00 and Saturday and Sunday "
            "10:00–18:00. The Engineering lab (E-110) is open Monday to Friday 8:00–21:00 and "
            "closed at weekends.",
            "10:00–18:00",
            "closed at weekends",
        ),
        side(
            ("图书馆机房周末几点开？", "工程机房周六开门吗？"),
            "图书馆机房周一至周五 8:00–22:00、周六周日 10:00–18:00 开放；工程机房（E-110）周一至周五 "
            "8:00–21:00 开放，周末关闭。",
            "10:00–18:00",
            "周末关闭",
        ),
    ),
    Fact(
        "microsoft-365",
        side(
            ("On how many computers can I install Office?", "Is Microsoft 365 free for staff?"),
            "Students and staff can install Microsoft 365 for free by signing in at office.com with "
            "their NetID@northfield.example address, on up to 5 computers, 5 tablets and 5 phones.",
            "office.com",
            "NetID@northfield.example",
            "5 computers",
        ),
        side(
            ("Office 能装几台电脑？", "教职工能免费用 Microsoft 365 吗？"),
            "在校学生和教职工可以免费使用 Microsoft 365，在 office.com 用 NetID@northfield.example 登录"
            "安装，最多可装在5台电脑、5台平板和5部手机上。",
            "office.com",
            "NetID@northfield.example",
            "5台电脑",
        ),
    ),
)

CONVERSATIONS: tuple[Conversation, ...] = (
    Conversation(
        "en",
        (
            "Do you deliver to Macau?",
            "Yes. Orders to Hong Kong and Macau are sent with SF Express and arrive 3–5 days "
            "after dispatch.",
            "And what's the delivery fee there?",
            "Shipping to Macau costs a flat ¥45 per order, whatever the order value.",
        ),
        ("¥45",),
    ),
    Conversation(
        "en",
        (
            "What's the warranty on the K1 kettle?",
            "The K1 kettle is under warranty for 1 year from the day it was delivered.",
            "And the charging cable that came with my earbuds?",
            "Cables, chargers and other accessories are under warranty for 3 months.",
        ),
        ("3 months",),
    ),
    Conversation(
        "en",
        (
            "How do I pair my Lumen Aura headphones?",
            "With the headphones switched off, hold the power button for 3 seconds until the light "
            "flashes blue and white, then choose Lumen Aura in your Bluetooth settings.",
            "I did that but they still won't connect.",
            "Forget the headphones in your phone's Bluetooth settings, then reset them by holding "
            "the power and volume-down buttons together for 10 seconds, and pair them again.",
        ),
        ("10 seconds", "volume-down"),
    ),
    Conversation(
        "en",
        (
            "How do points work at Lumen Home?",
            "You earn 1 point for every ¥1 you pay for products, and at checkout 100 points are "
            "worth ¥1.",
            "Do they ever expire?",
            "Yes, points expire on 31 December of the year after the one in which you earned them.",
        ),
        ("31 December",),
    ),
    Conversation(
        "en",
        (
            "Can I return a gift card?",
            "No, gift cards cannot be returned or refunded.",
            "What about earbuds I've already unsealed?",
            "In-ear earbuds whose hygiene seal has been broken cannot be returned without a reason; "
            "if they are faulty, you can still return or exchange them.",
        ),
        ("hygiene seal",),
    ),
    Conversation(
        "en",
        (
            "I need an invoice for a purchase.",
            "We issue electronic general VAT invoices; you can request one under My Orders up to "
            "90 days after delivery.",
            "How soon will I get it?",
            "It is issued within 3 working days after delivery and emailed to you; you can also "
            "download it from My Orders.",
        ),
        ("3 working days",),
    ),
    Conversation(
        "en",
        (
            "Is there an express delivery option?",
            "Yes, SF Express delivers 1–2 days after dispatch and costs ¥20 per order.",
            "Is it free for Gold members?",
            "Yes, express delivery with SF Express is free for Gold members on every order.",
        ),
        ("free", "Gold"),
    ),
    Conversation(
        "en",
        (
            "How do I descale the K1 kettle?",
            "Boil 1 litre of water with 2 tablespoons of citric acid, leave it for 30 minutes, pour "
            "it away and then boil fresh water twice.",
            "How often should I do that?",
            "In hard-water areas, descale it about every 4 weeks.",
        ),
        ("4 weeks",),
    ),
    Conversation(
        "zh",
        (
            "可以寄到香港吗？",
            "可以，寄往香港的订单使用顺丰速运，发货后3–5天送达。",
            "运费怎么收？",
            "寄往香港的运费统一为每单45元，与订单金额无关。",
        ),
        ("45元",),
    ),
    Conversation(
        "zh",
        (
            "Lumen路由器的保修期是多久？",
            "Wi-Fi 路由器和 Mesh 组网系统保修2年，自签收之日起计算。",
            "那智能插座呢？",
            "智能插座等智能家居设备保修1年，自签收之日起计算。",
        ),
        ("1年",),
    ),
    Conversation(
        "zh",
        (
            "积分可以抵现吗？",
            "可以，结算时100积分可抵1元。",
            "有抵扣上限吗？",
            "积分最多可抵扣订单金额的20%，以100积分为单位使用。",
        ),
        ("20%",),
    ),
    Conversation(
        "zh",
        (
            "订单能取消吗？",
            "订单发货前可以在“我的订单”中免费取消，款项全额原路退回。",
            "可是已经发货了。",
            "订单发出后就无法取消了，您可以拒收包裹，或在签收后7天内申请无理由退货。",
        ),
        ("拒收", "7天"),
    ),
    Conversation(
        "zh",
        (
            "Buds Air 怎么连手机？",
            "把两只耳机放进充电盒，打开盒盖，长按盒上按键3秒，直到指示灯白色闪烁，然后在蓝牙设置中选择"
            "“Lumen Buds Air”。",
            "按了还是连不上。",
            "请先在手机蓝牙设置中删除该耳机，再把耳机放在打开的充电盒中长按按键10秒，直到指示灯橙色闪烁，"
            "重置后重新配对。",
        ),
        ("10秒", "橙色"),
    ),
    Conversation(
        "zh",
        (
            "我要开发票。",
            "我们开具增值税电子普通发票，下单时或签收后90天内都可以在“我的订单”中申请。",
            "公司要专票的话呢？",
            "增值税专用发票需要提供公司名称、纳税人识别号、注册地址和电话、开户行及银行账号，在签收后5个"
            "工作日内开具。",
        ),
        ("纳税人识别号", "5个工作日"),
    ),
    Conversation(
        "zh",
        (
            "普通快递要几天？",
            "普通快递（中通快递）发货后2–4天送达大陆大部分地区。",
            "寄到青海也是这样吗？",
            "不是。青海属于偏远地区，仅支持普通快递，发货后5–8天送达，运费统一每单25元。",
        ),
        ("5–8天", "25元"),
    ),
    Conversation(
        "zh",
        (
            "电水壶怎么除垢？",
            "加入1升水和2勺柠檬酸（或100毫升白醋），烧开后静置30分钟，倒掉后再用清水烧两遍。",
            "多久需要除一次？",
            "水质较硬的地区建议大约每4周除一次水垢。",
        ),
        ("4周",),
    ),
)

# Questions the shop's texts do not answer: the answer is the tenant's fallback.
UNANSWERABLE: dict[str, tuple[str, ...]] = {
    "en": (
        "Do you sell robot vacuum cleaners?",
        "Can I collect my order in person from your warehouse?",
        "Do you offer gift wrapping?",
        "What is the Wi-Fi range of the AX3000 router in metres?",
        "Is the inner pot of the K1 kettle stainless steel or glass?",
        "Do I get anything for inviting a friend to sign up?",
        "Can you book me a taxi to the airport?",
        "What will the weather be like in Shenzhen this weekend?",
        "Are you hiring customer service staff?",
        "Does the Lumen Aura have active noise cancelling?",
    ),
    "zh": (
        "你们卖扫地机器人吗？",
        "可以去仓库自提吗？",
        "有礼品包装服务吗？",
        "K1电水壶的内胆是不锈钢的吗？",
        "邀请好友注册有奖励吗？",
        "能帮我订一张明天去广州的高铁票吗？",
        "这周末深圳天气怎么样？",
        "你们公司在招客服吗？",
        "Aura耳机有主动降噪功能吗？",
        "路由器信号能穿几堵墙？",
    ),
}
FALLBACK_FACTS = ("support@lumenhome.example", "400-800-1234")


def fallback_answers() -> dict[str, str]:
    tenant = yaml.safe_load((REPO_ROOT / "examples/shop/tenant.yaml").read_text(encoding="utf-8"))
    return dict(tenant["settings"]["fallback_answer"])


def build_examples() -> list[ChatExample]:
    """Every row, facts checked against their answers."""
    examples: list[ChatExample] = []
    for fact in SHOP_FACTS + HELPDESK_FACTS:
        for lang, language_side in (("en", fact.en), ("zh", fact.zh)):
            for question in language_side.questions:
                examples.append(
                    _example(lang, (question, language_side.answer), language_side.facts)
                )
    for conversation in CONVERSATIONS:
        examples.append(_example(conversation.lang, conversation.turns, conversation.facts))
    answers = fallback_answers()
    for lang, questions in UNANSWERABLE.items():
        for question in questions:
            examples.append(_example(lang, (question, answers[lang]), FALLBACK_FACTS))
    return examples


def _example(lang: str, turns: tuple[str, ...], facts: tuple[str, ...]) -> ChatExample:
    answer = turns[-1]
    missing = [fact for fact in facts if fact.casefold() not in answer.casefold()]
    if missing:
        raise ValueError(f"the answer {answer[:60]!r} does not state {missing}")
    roles: tuple[Role, Role] = ("user", "assistant")
    messages = [ChatTurn(role=roles[i % 2], content=text) for i, text in enumerate(turns)]
    return ChatExample.model_validate(
        {"messages": messages, "lang": lang, "origin": "seed", "facts": list(facts)}
    )


def main() -> None:
    count = write_examples(SHOP_INSTRUCTIONS, build_examples())
    print(f"wrote {count} examples to {SHOP_INSTRUCTIONS}")


if __name__ == "__main__":
    main()
