"""How fast `seqrun validate` checks a project of 200 sequence files.

Generates 200 realistic sequences (branches, waits, wait_for with timeouts, A/B variants, calendars,
limits, custom exits; conditions that differ from file to file) and their templates in a temporary
project, then times, best of several rounds:

- baseline: `yaml.safe_load` of the same files (PyYAML's default, what a naive loader would do),
  and PyYAML with its libyaml `CSafeLoader`;
- `load_paths`: reading, positioned YAML, schema, model and semantic checks;
- `validate_paths`: the whole `seqrun validate` pipeline, template lint included.

Run: python bench/bench_validate.py [FILES]   (or --smoke: 5 files, one round, to prove it works)
"""
from __future__ import annotations

import pathlib
import sys
import tempfile
import time
from collections.abc import Callable

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.cli.commands.validate import validate_paths  # noqa: E402
from runner.language import builder, checks, schemacheck  # noqa: E402
from runner.language.loader import load_paths  # noqa: E402

ROUNDS = 5

TEMPLATES = {
    "note.j2": 'Hi {{ lead.full_name | first_name | fallback("there") }}, enjoyed your post on {{ lead.topic }}.\n',
    "thanks.j2": "Hi {{ lead.full_name | first_name }}, thanks for connecting!\n",
    "intro.j2": "Hi {{ lead.full_name | first_name }},\n\n{% if lead.company_name %}How is "
                "{{ lead.company_name | company }} planning outreach this year?{% else %}How are you planning "
                "outreach this year?{% endif %}\n",
    "bump.j2": "Hi {{ lead.full_name | first_name }}, bumping this in case it got buried.\n",
    "short.j2": "{{ lead.full_name | first_name }}, two-minute demo?\n",
    "story.j2": "Hi {{ lead.full_name | first_name }}, a team like {{ lead.company_name | fallback('yours') }} "
                "doubled its reply rate last quarter.\n",
}

SEQUENCE = """\
# yaml-language-server: $schema=../schemas/sequence.schema.json
version: 1
name: campaign-{i}
description: Generated campaign number {i} for the validate benchmark.
provider: {provider}
senders: [alice, bob]
fields:
  full_name: required
  company_name: optional
  topic: optional
  title: optional
  timezone: optional
calendar:
  timezone: lead
  fallback: {zone}
  days: [mon, tue, wed, thu, fri]
  hours: ["0{start}:00-12:00", "13:00-17:{minute:02d}"]
  holidays: ["2026-12-24", "2026-12-25", "2027-01-01"]
limits:
  connect: {{daily: {connect}, min_gap: {gap} minutes}}
  message: {message}
  withdraw: 30
  jitter: 10 minutes
  warmup: {{days: 14, start: 0.2}}
exit_when:
  - replied
  - blocked
  - {{when: "'customer-{i}' in tags", end: customer}}
steps:
  - id: start
    branch:
      - when: lead_messaged_first
        end: lead_wrote_first
      - when: connected and days_since_last_message is not none and days_since_last_message < {cool}
        goto: cool_down
      - when: connected
        goto: first_message
      - when: invite_pending
        goto: pending
      - when: "'{word}' in (lead.title | default('') | lower)"
        goto: connect
      - default: visit
  - {{id: visit, action: visit}}
  - wait: {wait} business day
  - {{id: connect, action: connect, note: note.j2}}
  - {{id: accepted, wait_for: accepted, timeout: {timeout} days, on_timeout: withdraw, goto: first_message}}
  - id: cool_down
    wait: 3 days
  - id: first_message
    action: message
    template: {{with_note: thanks.j2, without_note: intro.j2}}
  - wait: 3 business days
  - id: ab
    action: message
    variants:
      - {{name: short, template: short.j2, weight: {weight}}}
      - {{name: story, template: story.j2}}
  - wait: 4 business days
  - id: check
    branch:
      - when: messages_sent < {limit} and not replied
        goto: last_bump
      - default: {{end: no_reply}}
  - id: last_bump
    action: message
    template: bump.j2
  - {{action: tag, tags: [bumped, "batch:{i}"]}}
  - end: no_reply
  - {{id: withdraw, action: withdraw}}
  - end: not_accepted
  - {{id: pending, wait_for: accepted, timeout: {timeout} days, on_timeout: {{end: not_accepted}}, goto: first_message}}
"""

WORDS = ("founder", "ceo", "head", "vp", "director", "owner", "cto")
ZONES = ("Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC", "Europe/London")
PROVIDERS = ("sandbox", "edges", "connectsafely")


def make_project(root: pathlib.Path, count: int) -> list[str]:
    (root / "templates").mkdir()
    for name, body in TEMPLATES.items():
        (root / "templates" / name).write_text(body, encoding="utf-8")
    (root / "sequences").mkdir()
    for i in range(count):
        text = SEQUENCE.format(
            i=i, provider=PROVIDERS[i % 3], zone=ZONES[i % 5], start=8 + i % 2, minute=i % 60,
            connect=15 + i % 10, gap=2 + i % 7, message=20 + i % 30, cool=2 + i % 4, word=WORDS[i % 7],
            wait=1 + i % 3, timeout=7 + i % 14, weight=1 + i % 9, limit=2 + i % 5,
        )
        (root / "sequences" / f"campaign_{i:03d}.yaml").write_text(text, encoding="utf-8")
    return sorted(str(p) for p in (root / "sequences").glob("*.yaml"))


def forget_per_run_caches() -> None:
    """Each round starts like a fresh `seqrun validate` run, except that the schema stays compiled."""
    schemacheck._known_valid.cache_clear()
    builder._compiled_condition.cache_clear()
    builder._included.cache_clear()
    checks._parse_condition.cache_clear()


def best_of(rounds: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(rounds):
        forget_per_run_caches()
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main(count: int, rounds: int = ROUNDS) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        files = make_project(root, count)
        # The first run pays for compiling the schema and every distinct condition once, as a real
        # `seqrun validate` process does; later rounds reuse those caches.
        started = time.perf_counter()
        all_diags, _ = validate_paths([str(root / "sequences")])
        cold = time.perf_counter() - started
        assert all_diags == [], all_diags[:5]
        seqs, diags, n = load_paths([str(root / "sequences")])
        assert n == count and len(seqs) == count and diags == [], diags[:5]

        def read_all(loader: Callable[[str], object]) -> None:
            for file in files:
                with open(file, encoding="utf-8") as fh:
                    loader(fh.read())

        safe = best_of(rounds, lambda: read_all(yaml.safe_load))
        csafe = best_of(rounds, lambda: read_all(lambda text: yaml.load(text, Loader=yaml.CSafeLoader)))
        loaded = best_of(rounds, lambda: load_paths([str(root / "sequences")]))
        validated = best_of(rounds, lambda: validate_paths([str(root / "sequences")]))

    print(f"{count} sequence files, best of {rounds} rounds")
    print(f"  yaml.safe_load (baseline)    {safe * 1000:8.1f} ms")
    print(f"  yaml CSafeLoader             {csafe * 1000:8.1f} ms")
    print(f"  load_paths (+ checks)        {loaded * 1000:8.1f} ms   {loaded / safe:5.2f}x baseline")
    print(f"  validate_paths (+ templates) {validated * 1000:8.1f} ms   {validated / safe:5.2f}x baseline")
    print(f"  validate_paths, first run    {cold * 1000:8.1f} ms   {cold / safe:5.2f}x baseline")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--smoke"]
    smoke = "--smoke" in sys.argv
    main(int(args[0]) if args else (5 if smoke else 200), 1 if smoke else ROUNDS)
