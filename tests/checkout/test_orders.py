"""Orders as a state machine, and databases made by earlier versions."""

from sqlalchemy import text
from sqlmodel import Session

from checkout.models import Order, OrderStatus, upgrade_order_status
from checkout.orders import TRANSITIONS, move
from core.db import make_engine
from vitrine.runtime import create_tables


def _order(status: str = "awaiting_payment") -> Order:
    return Order(id="ord_1", user_key="u", conversation_id="c", market="BR", language="pt",
                 merchant_slug="m", merchant_name="M", product_id="p", title="T",
                 amount=100, total=100, currency="BRL", rail="pix", status=status)


def test_no_status_is_a_dead_end_except_the_final_ones():
    final = {OrderStatus.REFUNDED}
    for status, onward in TRANSITIONS.items():
        assert onward or status in final, status
    assert OrderStatus.AWAITING_PAYMENT not in TRANSITIONS[OrderStatus.PAID]  # never back


def test_statuses_stored_as_enum_names_by_earlier_versions_are_read_again(database_url):
    engine = make_engine(database_url)
    create_tables(engine)
    with Session(engine) as session:
        session.add(_order())
        session.commit()
    with engine.begin() as conn:  # how the earlier enum column stored it
        if engine.dialect.name == "postgresql":
            # There SQLAlchemy's Enum was a native type of the members' names.
            names = ", ".join(f"'{s.name}'" for s in OrderStatus)
            conn.execute(text(f"CREATE TYPE orderstatus AS ENUM ({names})"))
            conn.execute(text('ALTER TABLE "order" ALTER COLUMN status TYPE orderstatus '
                              "USING upper(status)::orderstatus"))
        else:
            conn.execute(text("UPDATE \"order\" SET status = 'AWAITING_PAYMENT'"))
    upgrade_order_status(engine)
    with Session(engine) as session:
        order = session.get(Order, "ord_1")
        assert order.status == OrderStatus.AWAITING_PAYMENT
        assert move(session, order, OrderStatus.PAID, actor="rail:pix")
        session.commit()
    upgrade_order_status(engine)  # twice is harmless
    with Session(engine) as session:
        assert session.get(Order, "ord_1").status == "paid"
