"""The review app's Deals and Weekly review pages, and "Make a deal" on the item page (Streamlit AppTest,
signed in with a password, driving the real API over a socket)."""

from __future__ import annotations

from decimal import Decimal

from core.db import session_scope
from core.models import Product
from tests.factories import lead_payload, token, user
from tests.review.test_app import _api, _open, _queue_a_lead, _signed_in


def _price_book(settings) -> None:
    # No API writes the price book (it comes with the demo data or an import).
    with session_scope(settings) as session:
        session.add_all(
            [Product(name="GTX Basic", price=Decimal("550.00")), Product(name="GTX Pro", price=Decimal("4821.00"))]
        )


def _deal(http, settings, headers: dict[str, str], n: int, **convert) -> dict:
    lead = http.post(
        "/v1/leads",
        json=lead_payload(email=f"buyer{n}@company{n}.example", company=f"Company {n}", website=None),
        headers={"Authorization": f"Bearer {token(settings, 'integration', f'form-{n}')}"},
    )
    assert lead.status_code == 202, lead.text
    deal = http.post(f"/v1/leads/{lead.json()['id']}/convert", json=convert, headers=headers)
    assert deal.status_code == 201, deal.text
    return deal.json()


def _select_deal(at, deal_id: int):
    at.selectbox(key="deal_selected").select(deal_id)
    at.run()
    assert not at.exception, at.exception
    return at


def test_the_deals_page_lists_the_pipeline_with_its_filters(settings, live_server, http):
    _price_book(settings)
    user(settings, "closer", "Casey")
    at = _signed_in(live_server, settings, "closer", "Robin")
    api = _api(at)
    pro = _deal(http, settings, api, 1, product="GTX Pro", owner="Robin")
    basic = _deal(http, settings, api, 2, product="GTX Basic", owner="Casey")
    lost = _deal(http, settings, api, 3, product="GTX Basic")
    closed = http.post(f"/v1/deals/{lost['id']}/close", json={"outcome": "lost", "reason": "No budget"}, headers=api)
    assert closed.status_code == 200, closed.text
    _open(at, "deals")
    assert at.title[0].value == "Deals"
    listed = at.dataframe[0].value
    assert set(listed["id"]) == {pro["id"], basic["id"]}  # open deals only, by default
    assert set(listed["owner"]) == {"Robin", "Casey"} and set(listed["stage"]) == {"qualified"}
    assert any("2 deal(s)" in c.value for c in at.caption)

    at.selectbox(key="deals_owner").select("Casey")
    at.run()
    assert list(at.dataframe[0].value["id"]) == [basic["id"]]
    at.selectbox(key="deals_owner").select("(anyone)")
    at.checkbox(key="deals_open").uncheck()
    at.selectbox(key="deals_stage").select("lost")
    at.run()
    assert list(at.dataframe[0].value["id"]) == [lost["id"]]
    assert list(at.dataframe[0].value["lost reason"]) == ["No budget"]

    _select_deal(at, lost["id"])
    assert any("Lost: No budget" in w.value for w in at.warning)
    assert not [b for b in at.button if b.key == f"move_{lost['id']}"]  # a closed deal offers no actions


def test_a_stage_change_the_api_refuses_shows_its_message_and_an_edit_is_saved(settings, live_server, http, worker):
    _price_book(settings)
    at = _signed_in(live_server, settings, "closer", "Robin")
    api = _api(at)
    deal = _deal(http, settings, api, 1, product="GTX Pro")
    assert deal["owner"] == "Robin"  # nobody worked the lead: the closer who converted it owns the deal
    user(settings, "closer", name="Casey")
    _open(at, "deals")
    _select_deal(at, deal["id"])
    assert {m.label: m.value for m in at.metric}["Stage"] == "qualified"

    at.selectbox(key=f"stage_{deal['id']}").select("negotiation")
    at.button(key=f"move_{deal['id']}").click()
    at.run()
    assert not at.exception, at.exception
    assert any(
        f"Not moved: deal {deal['id']} cannot enter 'negotiation': no proposal was drafted for it" in e.value
        for e in at.error
    )
    assert http.get(f"/v1/deals/{deal['id']}", headers=api).json()["stage"] == "qualified"

    at.selectbox(key=f"owner_{deal['id']}").select("Casey")
    at.text_input(key=f"next_{deal['id']}").input("Send the proposal on Monday")
    at.text_input(key=f"value_{deal['id']}").input("5000")
    at.button(key=f"save_{deal['id']}").click()
    at.run()
    assert any(f"Deal #{deal['id']} saved: amount, next_step, owner." in s.value for s in at.success)
    saved = http.get(f"/v1/deals/{deal['id']}", headers=api).json()
    assert (saved["owner"], saved["next_step"], saved["amount"]) == ("Casey", "Send the proposal on Monday", "5000.00")
    at.text_input(key=f"value_{deal['id']}").input("lots")
    at.button(key=f"save_{deal['id']}").click()
    at.run()
    assert any("**amount**" in e.value for e in at.error)

    # Entering 'proposal' drafts one; once rendered, the deal page offers its PDF.
    at.selectbox(key=f"stage_{deal['id']}").select("proposal")
    at.button(key=f"move_{deal['id']}").click()
    at.run()
    assert any("A proposal is being drafted" in s.value for s in at.success)
    worker.run_until_idle()
    at.button(key="refresh").click()
    at.run()
    [proposal] = http.get(f"/v1/deals/{deal['id']}", headers=api).json()["proposals"]
    assert any(proposal["number"] in m.value for m in at.markdown)
    assert [b for b in at.get("download_button") if b.proto.label == "PDF"]


def test_closing_lost_needs_a_reason_and_won_brings_milestones_to_complete(settings, live_server, http):
    _price_book(settings)
    at = _signed_in(live_server, settings, "manager", "Morgan")
    api = _api(at)
    lost = _deal(http, settings, api, 1, product="GTX Basic")
    won = _deal(http, settings, api, 2, product="GTX Pro")
    _open(at, "deals")
    _select_deal(at, lost["id"])
    at.radio(key=f"outcome_{lost['id']}").set_value("lost")
    at.button(key=f"close_{lost['id']}").click()
    at.run()
    assert any("Not closed: a lost deal needs a reason" in e.value for e in at.error)
    assert http.get(f"/v1/deals/{lost['id']}", headers=api).json()["outcome"] is None

    at.text_input(key=f"lost_reason_{lost['id']}").input("Went with a competitor")
    at.button(key=f"close_{lost['id']}").click()
    at.run()
    assert any(f"Deal #{lost['id']} is lost. Reason: Went with a competitor" in s.value for s in at.success)
    closed = http.get(f"/v1/deals/{lost['id']}", headers=api).json()
    assert (closed["outcome"], closed["lost_reason"]) == ("lost", "Went with a competitor")

    _select_deal(at, won["id"])
    at.button(key=f"close_{won['id']}").click()  # no outcome chosen yet: nothing happens
    at.run()
    assert any("Choose won or lost first." in e.value for e in at.error)
    at.radio(key=f"outcome_{won['id']}").set_value("won")
    at.button(key=f"close_{won['id']}").click()
    at.run()
    assert any(f"Deal #{won['id']} is won." in s.value for s in at.success)
    at.checkbox(key="deals_open").uncheck()
    at.run()
    _select_deal(at, won["id"])
    assert list(at.dataframe[-1].value["status"]) == ["planned", "planned", "planned"]
    at.button(key=f"complete_{won['id']}").click()
    at.run()
    # "1. Kickoff" is the milestone's label: escaped, so it reads as written instead of starting a numbered list
    assert any("1\\. Kickoff is complete: its invoice" in s.value for s in at.success)
    milestones = http.get(f"/v1/deals/{won['id']}", headers=api).json()["milestones"]
    assert [m["status"] for m in milestones] == ["completed", "planned", "planned"]


def test_make_a_deal_from_a_review_item_of_a_lead_without_one(settings, live_server, http, worker):
    _price_book(settings)
    _queue_a_lead(settings, http, worker)
    at = _signed_in(live_server, settings, "closer", "Casey Jordan")
    at.radio(key="view").set_value("Everything")
    at.run()
    item_id = at.selectbox(key="selected").value
    lead_id = http.get(f"/v1/review-items/{item_id}", headers=_api(at)).json()["lead_id"]

    # The product is picked from the price book (GET /v1/products); the API refuses anything else by name.
    picker = at.selectbox(key=f"convert_product_{lead_id}")
    assert picker.options == ["(none yet)", "GTX Basic (USD 550.00)", "GTX Pro (USD 4,821.00)"]
    unknown = http.post(f"/v1/leads/{lead_id}/convert", json={"product": "GTX Ultra"}, headers=_api(at))
    assert unknown.status_code == 422 and unknown.json()["details"] == {"field": "product"}
    picker.select("GTX Pro (USD 4,821.00)")
    at.text_input(key=f"convert_value_{lead_id}").input("12.345")
    at.button(key=f"convert_{lead_id}").click()
    at.run()
    assert any("No deal made" in e.value and "**value**" in e.value for e in at.error)  # the field is named
    assert http.get("/v1/deals", params={"lead_id": lead_id}, headers=_api(at)).json()["total"] == 0

    at.text_input(key=f"convert_value_{lead_id}").input("4500")
    at.button(key=f"convert_{lead_id}").click()
    at.run()
    assert not at.exception, at.exception
    [deal] = http.get("/v1/deals", params={"lead_id": lead_id}, headers=_api(at)).json()["items"]
    assert (deal["product"], deal["amount"], deal["stage"]) == ("GTX Pro", "4500.00", "qualified")
    assert any(f"Deal #{deal['id']} made" in s.value for s in at.success)
    # The item page now says which deal the lead is, and offers no second one.
    assert at.selectbox(key="selected").value == item_id
    assert any(f"This lead is deal #{deal['id']}" in c.value for c in at.caption)
    assert not [b for b in at.button if b.key == f"convert_{lead_id}"]


def test_the_weekly_review_page_walks_the_agenda(settings, live_server, http):
    _price_book(settings)
    at = _signed_in(live_server, settings, "manager", "Morgan")
    api = _api(at)
    deal = _deal(http, settings, api, 1, product="GTX Pro", owner="Morgan")
    http.patch(f"/v1/deals/{deal['id']}", json={"next_step": "Book the demo"}, headers=api)
    lost = _deal(http, settings, api, 2, product="GTX Basic")
    http.post(f"/v1/deals/{lost['id']}/close", json={"outcome": "lost", "reason": "Timing"}, headers=api)
    _open(at, "weekly")
    assert at.title[0].value == "Weekly review"
    headings = [s.value for s in at.subheader]
    assert headings == [
        "1. What changed since last week · 5 min",
        "2. Pipeline by stage · 5 min",
        "3. Stalled deals · 6 min",
        "4. Unpaid invoices by age · 4 min",
    ]
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Deals created"], metrics["Lost"], metrics["Open deals"], metrics["Stalled deals"]) == (
        "2",
        "1",
        "1",
        "0",
    )
    frames = [f.value for f in at.dataframe]
    assert any("reason" in f and list(f["reason"]) == ["Timing"] for f in frames)
    assert any("next step" in f and list(f["next step"]) == ["Book the demo"] for f in frames)
    assert any("Nothing has stalled." in c.value for c in at.caption)
