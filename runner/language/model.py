"""The loaded sequence model: frozen records produced by the loader.

Everything after `runner.language.loader` works on these dataclasses, never on raw YAML dicts. A `Sequence`
is a flat, ordered tuple of steps; control flow is explicit (`goto`, `end`, branch cases, wait
timeouts) or falls through to the next step in order. Durations are `Duration` records, times of
day are `datetime.time`, time zones are IANA names already checked to exist.

`Pos` values point back into the YAML source so that later stages (semantic checks, template lint,
the engine's own errors) can report `FILE:LINE:COL`.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

# --- vocabularies (the JSON schema's enums are checked against these in tests) -----------------

#: Actions a step may perform. Order matters only for documentation.
ACTIONS: tuple[str, ...] = ("visit", "connect", "message", "withdraw", "tag", "notify")

#: Actions that touch LinkedIn and therefore count against per-sender daily limits.
LIMITED_ACTIONS: tuple[str, ...] = ("visit", "connect", "message", "inmail", "withdraw")

#: LinkedIn's documented daily ceilings per account type (seed 001, "Action Limits Quick Reference").
#: Limits above these are allowed but warned about: they risk the account.
CEILINGS: dict[str, dict[str, int]] = {
    "classic": {"visit": 80, "connect": 25, "message": 50},
    "sales_navigator": {"visit": 500, "connect": 30, "message": 250},
}

#: Events a `wait_for` step can wait for.
WAIT_EVENTS: tuple[str, ...] = ("accepted", "replied")

#: Built-in global exits usable as plain strings in `exit_when`.
BUILTIN_EXITS: tuple[str, ...] = ("replied", "blocked")

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

#: Facts the engine knows about every lead, usable in `when` conditions and templates.
#: name -> (python type name, description). Kept in one place so that docs, template lint and the
#: engine agree.
FACTS: dict[str, tuple[str, str]] = {
    "connected": ("bool", "the lead is a 1st-degree connection of the sender"),
    "invite_pending": ("bool", "a connection invite to the lead is waiting for an answer"),
    "invited": ("bool", "this sequence sent the lead an invite"),
    "invited_with_note": ("bool", "the invite this sequence sent carried a note"),
    "accepted": ("bool", "the lead accepted the invite this sequence sent"),
    "conversation_exists": ("bool", "a message thread with the lead exists"),
    "replied": ("bool", "the lead wrote to the sender after the sequence started"),
    "lead_messaged_first": ("bool", "the lead wrote to the sender before the sequence wrote to them"),
    "days_since_last_message": ("float|None", "days since the last message in the thread, either side; none without a thread"),
    "messages_sent": ("int", "messages this sequence has sent to the lead"),
    "blocked": ("bool", "the lead is on the block list"),
    "tags": ("list[str]", "tags set on the lead by `tag` steps"),
}

#: Names available to templates and conditions besides the facts.
CONTEXT_NAMES: dict[str, str] = {
    "lead": "the lead's fields, e.g. lead.full_name, lead.company_name, lead.linkedin_profile_url",
    "sender": "the sender: sender.name, sender.full_name (from seqrun.yaml)",
    "sequence": "the sequence: sequence.name",
}

#: Columns every lead has, whatever the sequence declares.
BUILTIN_LEAD_FIELDS: tuple[str, ...] = ("linkedin_profile_url",)


@dataclass(frozen=True, slots=True)
class Pos:
    """A place in a source file, 1-based line and column."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


# --- durations, calendars, limits -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Duration:
    """A span of time. `business` spans count only time or days inside the calendar's windows.

    Exactly one of `seconds` / `days` is meaningful for business spans: `business_days` counts
    window days, `business_seconds` counts seconds inside windows. Wall spans use `seconds` only.
    """

    text: str
    seconds: int = 0
    business: bool = False
    business_days: int = 0

    @property
    def timedelta(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.seconds)


@dataclass(frozen=True, slots=True)
class TimeRange:
    start: dt.time
    end: dt.time  # exclusive; 24:00 is stored as time.max


@dataclass(frozen=True, slots=True)
class Calendar:
    """When actions may happen. `timezone` is "lead", "sender" or an IANA zone name."""

    timezone: str = "lead"
    fallback: str = "UTC"
    days: tuple[int, ...] = (0, 1, 2, 3, 4)  # Monday = 0, like datetime.weekday()
    hours: tuple[TimeRange, ...] = (TimeRange(dt.time(9), dt.time(17)),)
    holidays: frozenset[dt.date] = frozenset()


@dataclass(frozen=True, slots=True)
class Limit:
    """A per-sender daily cap for one action in this sequence, with pacing inside the window."""

    daily: int
    min_gap: Duration | None = None
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class Warmup:
    """New senders ramp from `start` (a fraction of the limit) to the full limit over `days` days."""

    days: int
    start: float


@dataclass(frozen=True, slots=True)
class Limits:
    per_action: dict[str, Limit] = field(default_factory=dict)  # keys from LIMITED_ACTIONS
    warmup: Warmup | None = None
    jitter: Duration | None = None


# --- templates and conditions ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TemplateRef:
    """A reference to a template file under the project's templates/ directory."""

    name: str  # as written, relative to templates/
    pos: Pos


@dataclass(frozen=True, slots=True)
class MessageTemplate:
    """Either one template, or a pair chosen by how the invite was sent (seed 000)."""

    default: TemplateRef | None = None
    with_note: TemplateRef | None = None
    without_note: TemplateRef | None = None

    def all(self) -> tuple[TemplateRef, ...]:
        return tuple(t for t in (self.default, self.with_note, self.without_note) if t is not None)


@dataclass(frozen=True, slots=True)
class Variant:
    """One arm of an A/B test. `name` is recorded on every action it produces."""

    name: str
    template: MessageTemplate
    weight: int
    pos: Pos


@dataclass(frozen=True, slots=True)
class Condition:
    """A Jinja expression over facts and lead fields, e.g. `connected and lead.title`."""

    source: str
    pos: Pos


# --- steps ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """Where control goes: a step id, or the end of the sequence with a named outcome."""

    goto: str | None = None
    end: str | None = None
    pos: Pos | None = None

    def __post_init__(self) -> None:
        assert (self.goto is None) != (self.end is None), "exactly one of goto/end"


@dataclass(frozen=True, slots=True)
class ActionStep:
    id: str
    pos: Pos
    action: str  # one of ACTIONS
    # connect
    note: TemplateRef | None = None
    # message: either `template` or `variants`
    template: MessageTemplate | None = None
    variants: tuple[Variant, ...] = ()
    inmail: bool = False
    subject: str | None = None  # inline Jinja template, InMail only
    # tag
    tags: tuple[str, ...] = ()
    # notify
    url: str | None = None
    headers_from_env: dict[str, str] = field(default_factory=dict)
    # tag, notify: wait for the calendar's window first (LinkedIn actions always do)
    in_window: bool = False
    # withdraw: "ours" (only an invite this sequence sent) or "any" (also one sent by hand or elsewhere)
    invite: str = "ours"
    # flow
    then: Target | None = None  # None = fall through to the next step

    @property
    def kind(self) -> Literal["action"]:
        return "action"

    @property
    def limit_key(self) -> str | None:
        """The daily-limit bucket this step charges, or None when it is not limited."""
        if self.action == "message" and self.inmail:
            return "inmail"
        return self.action if self.action in LIMITED_ACTIONS else None


@dataclass(frozen=True, slots=True)
class WaitStep:
    id: str
    pos: Pos
    duration: Duration
    then: Target | None = None

    @property
    def kind(self) -> Literal["wait"]:
        return "wait"


@dataclass(frozen=True, slots=True)
class WaitForStep:
    """Wait until `event` happens (continue with `then` or the next step) or `timeout` passes."""

    id: str
    pos: Pos
    event: str  # one of WAIT_EVENTS
    timeout: Duration
    on_timeout: Target | None = None  # None = fall through to the next step
    then: Target | None = None

    @property
    def kind(self) -> Literal["wait_for"]:
        return "wait_for"


@dataclass(frozen=True, slots=True)
class BranchCase:
    when: Condition
    target: Target


@dataclass(frozen=True, slots=True)
class BranchStep:
    """Ordered cases; the first whose condition is true wins, else `default`.

    `default` is a Target, or None meaning "fall through to the next step" (`default: next`).
    """

    id: str
    pos: Pos
    cases: tuple[BranchCase, ...]
    default: Target | None
    default_pos: Pos | None = None

    @property
    def kind(self) -> Literal["branch"]:
        return "branch"


@dataclass(frozen=True, slots=True)
class EndStep:
    id: str
    pos: Pos
    outcome: str

    @property
    def kind(self) -> Literal["end"]:
        return "end"


Step = ActionStep | WaitStep | WaitForStep | BranchStep | EndStep


@dataclass(frozen=True, slots=True)
class Exit:
    """A global exit: checked before every action and at every wake-up."""

    name: str  # "replied", "blocked", or "custom"
    outcome: str
    when: Condition | None
    pos: Pos


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    required: bool
    pos: Pos


#: id(steps tuple) -> (that tuple, its index): a frozen, slotted Sequence has nowhere to keep it
_INDEXES: dict[int, tuple[tuple[Step, ...], dict[str, int]]] = {}


@dataclass(frozen=True, slots=True)
class Sequence:
    name: str
    version: int
    path: str  # the YAML file as given to the loader
    source_hash: str  # sha256 of the YAML bytes and every template it uses: names the version
    description: str
    provider: str | None
    senders: tuple[str, ...]  # empty = every sender in the project
    fields: tuple[FieldSpec, ...]
    calendar: Calendar
    limits: Limits
    exits: tuple[Exit, ...]
    steps: tuple[Step, ...]
    templates_dir: str  # absolute path of the templates directory used to resolve TemplateRefs
    pos: Pos
    sender_positions: tuple[Pos, ...] = ()  # where each name in `senders` is written
    #: the exact text of this version (runner.versions stores it): the YAML, and each template it
    #: uses by name, those they include too; rendering reads templates from here, not from the disk
    source: str = ""
    templates: tuple[tuple[str, str], ...] = ()

    def step(self, step_id: str) -> Step:
        return self.steps[self.index[step_id]]

    @property
    def index(self) -> dict[str, int]:
        """Step id -> position. Kept per steps tuple (the engine asks several times per lead)."""
        known = _INDEXES.get(id(self.steps))
        if known is None or known[0] is not self.steps:
            known = _INDEXES[id(self.steps)] = (self.steps, {s.id: i for i, s in enumerate(self.steps)})
        return dict(known[1])

    def next_step_id(self, step_id: str) -> str | None:
        """The id of the step after `step_id` in file order, or None at the end of the list."""
        i = self.index[step_id] + 1
        return self.steps[i].id if i < len(self.steps) else None

    @property
    def field_names(self) -> tuple[str, ...]:
        return BUILTIN_LEAD_FIELDS + tuple(f.name for f in self.fields)
