"""Managers: cash (DSO, aging, expected collections by week, unpaid invoices) and the weekly momentum
review (open deals by stage next to what customers owe)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pandas as pd
import streamlit as st

from review.client import ApiError, RevloopClient
from review.ui import common
from review.ui.common import show_error


def page(client: RevloopClient) -> None:
    st.title("Cash")
    today = dt.datetime.now(dt.UTC).date()
    # Billing history can be old (the IBM sample is 2012-2013): allow any past day.
    as_of = st.date_input("As of", value=today, min_value=dt.date(2000, 1, 1), max_value=today, key="cash_as_of")
    try:
        view = client.cash(as_of)
    except ApiError as exc:
        show_error(exc)
        return
    cols = st.columns(3)
    cols[0].metric(
        "DSO",
        "-" if view["dso_days"] is None else f"{view['dso_days']:.1f} days",
        help=f"Receivable / sales of the last {view['dso_window_days']} days x {view['dso_window_days']}; goal < 30",
    )
    cols[1].metric("Receivable", f"USD {Decimal(view['receivable']):,.2f}")
    cols[2].metric("Unpaid invoices", len(view["unpaid"]))

    st.subheader("Aging (days past due)")
    aging = pd.DataFrame([{"bucket": k, "amount": float(v)} for k, v in view["aging"].items()])
    st.bar_chart(aging, x="bucket", y="amount", sort=False)

    st.subheader("Expected collections by week")
    expected = pd.DataFrame([{"week of": w["week_of"], "amount": float(w["amount"])} for w in view["expected_by_week"]])
    st.bar_chart(expected, x="week of", y="amount", sort=False)
    st.caption(
        "Each open invoice is expected on its due date plus the customer's average days late; "
        "disputed ones are left out."
    )

    st.subheader("Unpaid invoices")
    if view["unpaid"]:
        st.dataframe(pd.DataFrame(view["unpaid"]), hide_index=True, width="stretch")
    else:
        st.caption("Nothing is owed.")

    _held_payments(client)
    _blocked_invoices(client)

    st.subheader("Weekly momentum: open deals by stage")
    if view["open_deals"]:
        deals = pd.DataFrame([{**d, "amount": float(d["amount"])} for d in view["open_deals"]])
        st.bar_chart(deals, x="stage", y="amount")
        st.dataframe(deals, hide_index=True, width="stretch")
    else:
        st.caption("No open deals.")


def _held_payments(client: RevloopClient) -> None:
    """Money that named no invoice we issued (an M-Pesa account reference, an unknown Stripe customer): a person
    places it on an invoice; nothing is applied by guess."""
    st.subheader("Held payments")
    try:
        held = client.held_payments()["items"]
    except ApiError as exc:
        show_error(exc)
        return
    if not held:
        st.caption("No payment is waiting to be placed.")
        return
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "id": h["id"],
                    "via": h["provider"],
                    "transaction": h["event_id"],
                    "amount": f"{h['currency'] or ''} {h['amount']}",
                    "reference given": h["reference"],
                    "why held": h["reason"],
                    "received": h["received_at"],
                }
                for h in held
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    with st.form("assign_held"):
        choice = st.selectbox(
            "Payment", [h["id"] for h in held], format_func=lambda i: next(h["event_id"] for h in held if h["id"] == i)
        )
        number = st.text_input("Invoice number it pays", key="held_invoice_number")
        if st.form_submit_button("Assign to the invoice"):
            try:
                client.assign_held_payment(int(choice), number.strip())
            except ApiError as exc:
                show_error(exc)
            else:
                st.toast(f"Recorded against {number.strip()}.")
                st.rerun()  # the list above no longer holds it


def _blocked_invoices(client: RevloopClient) -> None:
    """Invoices waiting for the tax authority (retrying) or rejected by it: not sent and not chased until fixed."""
    try:
        blocked = client.blocked_invoices()
    except ApiError as exc:
        show_error(exc)
        return
    if not blocked:
        return
    st.subheader("Invoices blocked by the tax authority")
    st.dataframe(
        pd.DataFrame(
            [
                {"number": i["number"], "amount": i["amount"], "fiscal": i["fiscal_status"], "why": i["fiscal_error"]}
                for i in blocked
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    rejected = [i for i in blocked if i["fiscal_status"] == "rejected"]
    for invoice in rejected:
        if st.button(f"Resubmit {invoice['number']} (after fixing it)", key=f"fiscal_{invoice['id']}"):
            try:
                client.resubmit_fiscal(invoice["id"])
            except ApiError as exc:
                show_error(exc)
            else:
                st.toast(f"{invoice['number']} goes to the tax authority again.")
                st.rerun()


if __name__ == "__main__":  # Streamlit runs this file as the page (review/ui/pages.py)
    page(common.client())
