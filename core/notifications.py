"""Notifications: what a person must know without watching a table (a new A lead assigned to them, an SLA
about to breach or breached, a send that failed, an integration that went down or came back).

One row per recipient, so each person reads and clears their own (the in-app channel). Besides it:
- email to the user's own address (the users table, never a lead's), sent by a job through the mail
  transport, exactly once per notification, held during the person's quiet hours;
- the team webhook (Slack-compatible JSON, HMAC-signed), one post per event, on per kind as managers set it.
Each person chooses per kind and channel (defaults below); the same event for the same person is told once
(a dedupe key), and a burst of one kind for one item collapses into the row already there.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import uuid
from collections.abc import Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from core import audit, jobs
from core.db import insert_once
from core.enums import DeliveryStatus, JobKind, NotificationChannel, NotificationKind, Role
from core.errors import InvalidInput, NotFound
from core.models import (
    Job,
    Notification,
    NotificationDelivery,
    NotificationPreference,
    QuietHours,
    TeamChannelSetting,
    User,
    utcnow,
)
from core.settings import Settings, get_settings

log = logging.getLogger("revloop.notifications")

# Who hears about trouble that is nobody's item in particular.
OPERATORS = (Role.MANAGER, Role.ADMIN)

# In-app cannot be switched off for these, the critical ones: each needs a person to act now (call the lead,
# retry, decide, take the item, fix the integration).
REQUIRED_IN_APP = frozenset(
    {
        NotificationKind.NEW_A_LEAD,
        NotificationKind.SEND_FAILED,
        NotificationKind.DELIVERY_UNKNOWN,
        NotificationKind.SLA_BREACHED,
        NotificationKind.INTEGRATION_DOWN,
    }
)
# Email by default only where minutes count for the person themselves.
EMAIL_BY_DEFAULT = frozenset({NotificationKind.NEW_A_LEAD, NotificationKind.SLA_BREACHED})
# The team channel by default: what the whole team should see; personal ones (taken over, at risk) stay off.
WEBHOOK_BY_DEFAULT = frozenset(
    {
        NotificationKind.NEW_A_LEAD,
        NotificationKind.SLA_BREACHED,
        NotificationKind.SEND_FAILED,
        NotificationKind.INTEGRATION_DOWN,
        NotificationKind.INTEGRATION_RECOVERED,
    }
)
PERSONAL_CHANNELS = (NotificationChannel.IN_APP, NotificationChannel.EMAIL)


def deep_link(settings: Settings, entity_type: str | None, entity_id: str | None) -> str:
    """The review app's URL of what a notification is about (the one place links are built)."""
    app = settings.resolved_app_url
    if entity_type == "review_item" and entity_id:
        return f"{app}/?item={entity_id}"
    if entity_type == "integration":
        return f"{app}/health"
    return f"{app}/notifications"


def default_enabled(kind: str, channel: str) -> bool:
    if channel == NotificationChannel.IN_APP:
        return True
    if channel == NotificationChannel.EMAIL:
        return kind in EMAIL_BY_DEFAULT
    return kind in WEBHOOK_BY_DEFAULT


def _choices(session: Session, user_ids: list[int], kind: str) -> dict[tuple[int, str], bool]:
    if not user_ids:
        return {}
    rows = session.execute(
        select(NotificationPreference.user_id, NotificationPreference.channel, NotificationPreference.enabled).where(
            NotificationPreference.user_id.in_(user_ids), NotificationPreference.kind == kind
        )
    ).all()
    return {(user_id, channel): enabled for user_id, channel, enabled in rows}


def team_webhook_enabled(session: Session, kind: str) -> bool:
    chosen = session.scalar(select(TeamChannelSetting.webhook).where(TeamChannelSetting.kind == kind))
    return default_enabled(kind, NotificationChannel.WEBHOOK) if chosen is None else chosen


# --- quiet hours ---------------------------------------------------------------------------------------------

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def _minutes(hhmm: str) -> int:
    return int(hhmm[:2]) * 60 + int(hhmm[3:])


def quiet_until(quiet: QuietHours | None, now: dt.datetime) -> dt.datetime | None:
    """When the quiet hours that `now` falls in end (UTC), or None when `now` is not in them.
    A start after the end spans midnight (22:00-07:00)."""
    if quiet is None:
        return None
    zone = ZoneInfo(quiet.timezone)
    local = now.astimezone(zone)
    start, end, minute = _minutes(quiet.start), _minutes(quiet.end), local.hour * 60 + local.minute
    inside = start <= minute < end if start < end else (minute >= start or minute < end)
    if not inside:
        return None
    end_day = local.date() if minute < end else local.date() + dt.timedelta(days=1)
    local_end = dt.datetime.combine(end_day, dt.time(end // 60, end % 60), tzinfo=zone)
    return local_end.astimezone(dt.UTC)


# --- notify ---------------------------------------------------------------------------------------------------


def _enqueue_delivery(session: Session, delivery: NotificationDelivery, run_after: dt.datetime | None) -> None:
    jobs.enqueue(
        session,
        JobKind.NOTIFICATION_DELIVER,
        {"delivery_id": delivery.id},
        dedupe_key=f"{JobKind.NOTIFICATION_DELIVER}:{delivery.id}",
        run_after=run_after,
    )


def _add_delivery(session: Session, delivery: NotificationDelivery, run_after: dt.datetime | None = None) -> bool:
    delivery, created = insert_once(
        session, delivery, select(NotificationDelivery).where(NotificationDelivery.key == delivery.key)
    )
    if created:
        _enqueue_delivery(session, delivery, run_after)
    return created


def _collapse_into_recent(
    session: Session, user_id: int, kind: str, entity: tuple[str, object], title: str, body: str, window_minutes: float
) -> bool:
    """A burst of one kind for one item: the row from a moment ago is brought back unread with the latest text
    instead of a second row (and no second email or post)."""
    if window_minutes <= 0:
        return False
    recent = session.scalar(
        select(Notification)
        .where(
            Notification.user_id == user_id,
            Notification.kind == kind,
            Notification.entity_type == entity[0],
            Notification.entity_id == str(entity[1]),
            Notification.created_at >= utcnow() - dt.timedelta(minutes=window_minutes),
        )
        .order_by(Notification.id.desc())
        .limit(1)
    )
    if recent is None:
        return False
    recent.title, recent.body, recent.read_at = title[:300], body, None
    return True


def notify(
    session: Session,
    kind: NotificationKind,
    title: str,
    *,
    body: str = "",
    severity: str = "warning",
    roles: Iterable[str] = OPERATORS,
    names: Iterable[str | None] = (),
    entity: tuple[str, object] | None = None,
    dedupe_key: str | None = None,
    settings: Settings | None = None,
) -> list[Notification]:
    """Notify every active user with one of `roles` and the active users named in `names` (each once), on the
    channels each chose, and post the event to the team webhook when it is on for `kind`.

    With a `dedupe_key`, a user who already has a notification with that key gets no second one (a retried
    job or a repeated scan tells each person once), and the webhook posts once. Returns the rows created now.
    Email and webhook are queued as jobs in this transaction: nothing is sent unless the caller commits."""
    settings = settings or get_settings()
    wanted_names = [n for n in names if n]
    conditions = [User.role.in_([str(r) for r in roles])]
    if wanted_names:
        conditions.append(User.name.in_(wanted_names))
    users = session.scalars(select(User).where(User.active.is_(True), or_(*conditions)).order_by(User.id)).all()
    choices = _choices(session, [u.id for u in users], kind)
    quiet = {
        q.user_id: q for q in session.scalars(select(QuietHours).where(QuietHours.user_id.in_([u.id for u in users])))
    }
    now = utcnow()
    rows: list[Notification] = []
    collapsed = 0
    for user in users:
        in_app = kind in REQUIRED_IN_APP or choices.get((user.id, NotificationChannel.IN_APP), True)
        email = choices.get((user.id, NotificationChannel.EMAIL), default_enabled(kind, NotificationChannel.EMAIL))
        if not in_app and not email:
            continue
        if dedupe_key is not None and session.scalar(
            select(Notification.id).where(Notification.user_id == user.id, Notification.dedupe_key == dedupe_key)
        ):
            collapsed += 1
            continue
        if entity and _collapse_into_recent(session, user.id, kind, entity, title, body, settings.notify_burst_minutes):
            collapsed += 1
            continue
        row = Notification(
            user_id=user.id,
            kind=kind,
            severity=severity,
            title=title[:300],
            body=body,
            entity_type=entity[0] if entity else None,
            entity_id=str(entity[1]) if entity else None,
            dedupe_key=dedupe_key,
            shown=in_app,
        )
        if dedupe_key is None:
            session.add(row)
            session.flush()
        else:
            # a concurrent notify with the same key may win the race: its row stands, ours is dropped
            row, created = insert_once(
                session,
                row,
                select(Notification).where(Notification.user_id == user.id, Notification.dedupe_key == dedupe_key),
            )
            if not created:
                collapsed += 1
                continue
        rows.append(row)
        if email:
            hold = quiet_until(quiet.get(user.id), now)
            _add_delivery(
                session,
                NotificationDelivery(
                    key=f"{NotificationChannel.EMAIL}:{row.id}",
                    channel=NotificationChannel.EMAIL,
                    notification_id=row.id,
                    user_id=user.id,
                    kind=kind,
                    subject=title[:300],
                    body=body,
                    status=DeliveryStatus.HELD if hold else DeliveryStatus.PENDING,
                    hold_until=hold,
                ),
                hold,
            )
    # The team hears of the event once, whoever else did; not again when everyone had it already.
    if team_webhook_enabled(session, kind) and (rows or not collapsed):
        event = dedupe_key or (f"{kind}:{rows[0].id}" if rows else f"{kind}:{uuid.uuid4().hex}")
        _add_delivery(
            session,
            NotificationDelivery(
                key=f"{NotificationChannel.WEBHOOK}:{event}"[:250],
                channel=NotificationChannel.WEBHOOK,
                notification_id=rows[0].id if rows else None,
                kind=kind,
                subject=title[:300],
                body=body,
                link=deep_link(settings, entity[0], str(entity[1])) if entity else None,
            ),
        )
    log.warning("notification %s: %s (%d recipient(s), %d already told)", kind, title, len(rows), collapsed)
    session.flush()
    return rows


# --- reading --------------------------------------------------------------------------------------------------


def for_user(session: Session, user_id: int, *, unread_only: bool = False, limit: int = 50) -> list[Notification]:
    query = select(Notification).where(Notification.user_id == user_id, Notification.shown.is_(True))
    if unread_only:
        query = query.where(Notification.read_at.is_(None))
    return list(session.scalars(query.order_by(Notification.created_at.desc(), Notification.id.desc()).limit(limit)))


def unread_count(session: Session, user_id: int) -> int:
    return session.scalar(
        select(func.count()).where(
            Notification.user_id == user_id, Notification.shown.is_(True), Notification.read_at.is_(None)
        )
    )


def mark_read(session: Session, user_id: int, notification_id: int | None = None) -> int:
    """Mark one notification (or, with None, all of them) read; 404 for someone else's."""
    query = update(Notification).where(Notification.user_id == user_id, Notification.read_at.is_(None))
    if notification_id is not None:
        found = session.scalar(
            select(Notification.id).where(Notification.id == notification_id, Notification.user_id == user_id)
        )
        if found is None:
            raise NotFound(f"notification {notification_id} not found")
        query = query.where(Notification.id == notification_id)
    return session.execute(query.values(read_at=utcnow()).execution_options(synchronize_session=False)).rowcount


# --- preferences ----------------------------------------------------------------------------------------------


def preferences(session: Session, user_id: int) -> dict:
    """A person's channels per kind (their choices over the defaults), their quiet hours and email address."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    chosen = {
        (p.kind, p.channel): p.enabled
        for p in session.scalars(select(NotificationPreference).where(NotificationPreference.user_id == user_id))
    }
    channels = {
        kind.value: {
            channel.value: kind in REQUIRED_IN_APP
            if channel == NotificationChannel.IN_APP and kind in REQUIRED_IN_APP
            else chosen.get((kind.value, channel.value), default_enabled(kind, channel))
            for channel in PERSONAL_CHANNELS
        }
        for kind in NotificationKind
    }
    quiet = session.get(QuietHours, user_id)
    return {
        "channels": channels,
        "required_in_app": sorted(k.value for k in REQUIRED_IN_APP),
        "quiet_hours": {"start": quiet.start, "end": quiet.end, "timezone": quiet.timezone} if quiet else None,
        "email": user.email,
    }


def validate_quiet_hours(start: str, end: str, timezone: str) -> None:
    for field, value in (("start", start), ("end", end)):
        if not _HHMM.match(value or ""):
            raise InvalidInput(f"quiet_hours.{field} must be a local time HH:MM (00:00-23:59), got {value!r}")
    if start == end:
        raise InvalidInput("quiet_hours.end must differ from quiet_hours.start")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise InvalidInput(
            f"quiet_hours.timezone must be an IANA time zone such as Europe/Berlin, got {timezone!r}"
        ) from exc


def set_preferences(
    session: Session,
    user_id: int,
    *,
    actor: str,
    channels: dict[str, dict[str, bool]] | None = None,
    quiet_hours: dict[str, str] | None = None,
    clear_quiet_hours: bool = False,
) -> dict:
    """Change a person's own choices (only the kinds and channels given) and quiet hours; audited. Email held
    for quiet hours that no longer hold is released at once (or at the new end)."""
    before = preferences(session, user_id)
    for kind, wanted in (channels or {}).items():
        for channel, enabled in wanted.items():
            if channel == NotificationChannel.IN_APP and kind in REQUIRED_IN_APP and not enabled:
                raise InvalidInput(
                    f"channels.{kind}.in_app cannot be switched off: {kind} needs a person to act, so it always "
                    "shows in the app",
                    details={"field": f"channels.{kind}.in_app"},
                )
    for kind, wanted in (channels or {}).items():
        for channel, enabled in wanted.items():
            row, created = insert_once(
                session,
                NotificationPreference(user_id=user_id, kind=kind, channel=channel, enabled=enabled),
                select(NotificationPreference).where(
                    NotificationPreference.user_id == user_id,
                    NotificationPreference.kind == kind,
                    NotificationPreference.channel == channel,
                ),
            )
            row.enabled = enabled
    if quiet_hours is not None:
        validate_quiet_hours(quiet_hours["start"], quiet_hours["end"], quiet_hours["timezone"])
        row = session.get(QuietHours, user_id) or QuietHours(user_id=user_id)
        row.start, row.end, row.timezone = quiet_hours["start"], quiet_hours["end"], quiet_hours["timezone"]
        session.add(row)
    elif clear_quiet_hours:
        row = session.get(QuietHours, user_id)
        if row is not None:
            session.delete(row)
    session.flush()
    _reschedule_held(session, user_id)
    after = preferences(session, user_id)
    if after != before:
        audit.record(
            session,
            actor=actor,
            action="notification_preferences.updated",
            entity_type="user",
            entity_id=user_id,
            before={k: before[k] for k in ("channels", "quiet_hours")},
            after={k: after[k] for k in ("channels", "quiet_hours")},
        )
    return after


def _reschedule_held(session: Session, user_id: int) -> None:
    """Held email follows the quiet hours as they are now: released when they are gone, moved when they moved."""
    held = session.scalars(
        select(NotificationDelivery).where(
            NotificationDelivery.user_id == user_id, NotificationDelivery.status == DeliveryStatus.HELD
        )
    ).all()
    if not held:
        return
    now = utcnow()
    release = quiet_until(session.get(QuietHours, user_id), now) or now
    for delivery in held:
        delivery.hold_until = release if release > now else None
        if release <= now:
            delivery.status = DeliveryStatus.PENDING
        key = f"{JobKind.NOTIFICATION_DELIVER}:{delivery.id}"
        session.execute(update(Job).where(Job.dedupe_key == key, Job.status == "queued").values(run_after=release))
        _republish(session, key)


def _republish(session: Session, job_key: str) -> None:
    """On Celery, a job moved earlier needs a message of its own: the one it has may carry the old time (or none
    was sent yet for a time far off). A second message for the same job is harmless: the first claim wins."""
    settings = session.info.get("settings")
    if settings is None or not settings.broker_url:
        return
    from core import broker  # Celery is imported only where a broker is configured

    job = session.scalar(select(Job).where(Job.dedupe_key == job_key, Job.status == "queued"))
    if job is not None:
        session.refresh(job)
        broker.publish_after_commit(session, job)


def team_channels(session: Session) -> dict[str, bool]:
    """The team webhook per kind (managers' choices over the defaults)."""
    return {kind.value: team_webhook_enabled(session, kind) for kind in NotificationKind}


def set_team_channels(session: Session, webhook: dict[str, bool], *, actor: str) -> dict[str, bool]:
    before = team_channels(session)
    for kind, enabled in webhook.items():
        row = session.get(TeamChannelSetting, kind) or TeamChannelSetting(kind=kind)
        row.webhook = enabled
        session.add(row)
    session.flush()
    after = team_channels(session)
    if after != before:
        audit.record(
            session,
            actor=actor,
            action="notification_team_channels.updated",
            entity_type="team_channel_settings",
            entity_id="webhook",
            before=before,
            after=after,
        )
    return after
