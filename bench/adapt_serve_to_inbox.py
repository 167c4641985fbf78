"""Apply after `git merge main` brings the durable inbox (run from the worktree root)."""
import re
def sub(path, old, new, count=1):
    s = open(path).read()
    assert old in s, (path, old[:60])
    s = s.replace(old, new, count)
    open(path, "w").write(s)

# 1. the inbox answers "duplicate" for a verified delivery that brought nothing new
sub("runner/webhooks.py", '''            self.stats["duplicate_events"] += len(events) - len(new)
        return 200, "ok"''', '''            self.stats["duplicate_events"] += len(events) - len(new)
        # A verified delivery whose every event was stored before (a provider's retry) changes nothing.
        return (200, "duplicate") if events and not new else (200, "ok")''')
sub("runner/webhooks.py", '''        committed before the answer.''', '''        committed before the answer: (200, "ok"), or (200, "duplicate") when every event was stored
        before.''')

# 2. lifecycle: the engine reads the stored inbox itself
sub("runner/server/lifecycle.py", '''        metrics = Metrics(clock=self.clock, senders=lambda: [s.caps for s in engine.rt.senders.values()])

        def events() -> list[ProviderEvent]:
            taken = inbox.drain()
            metrics.engine_took_deliveries()
            return taken

        engine.rt.webhook_events = events
''', '''        metrics = Metrics(clock=self.clock, senders=lambda: [s.caps for s in engine.rt.senders.values()])
''')
sub("runner/server/lifecycle.py", '''            state.readiness.stopping = True
            http.stop()
            # Deliveries verified while the engine finished its last call: applied now, not dropped.
            now = self.clock()
            for event in events():
                engine.apply_event(event, now, source="webhook")
''', '''            state.readiness.stopping = True
            http.stop()  # deliveries answered meanwhile are in the inbox: the next start applies them
''')
sub("runner/server/lifecycle.py", "from ..providers.base import ProviderEvent\n", "")

# 3. metrics: the inbox lag from the database
sub("runner/server/metrics.py", '''        self.registry.register(_StoreCollector(clock, senders))
        self._lag = _Lag(clock)
        self.inbox_lag.set_function(self._lag.seconds)

    def delivery_waiting(self) -> None:
        """A verified delivery is waiting for the engine."""
        self._lag.waiting()

    def engine_took_deliveries(self) -> None:
        """The engine took every delivery waiting so far."""
        self._lag.taken()
''', '''        self.registry.register(_StoreCollector(clock, senders))
        self.inbox_lag.set_function(lambda: serving.inbox_lag(clock()))
''')
s = open("runner/server/metrics.py").read()
s = s[:s.index("class _Lag:")] + s[s.index("class _StoreCollector"):]
open("runner/server/metrics.py", "w").write(s)
sub("runner/server/metrics.py", "import threading\n", "")
sub("runner/server/metrics.py", '''What the process counts itself: webhook deliveries by provider and verdict, their answer time, the
engine loop's pass duration and what passes did, and the inbox lag (how long the oldest verified
delivery not yet applied by the engine has waited).''', '''What the process counts itself: webhook deliveries by provider and verdict, their answer time, the
engine loop's pass duration and what passes did. The inbox lag (how long the oldest stored event
not yet applied has waited) is read from the database.''')
sub("runner/server/receiving.py", '''        if verdict == VERIFIED:
            state.metrics.delivery_waiting()
            state.wake()''', '''        if verdict == VERIFIED:
            state.wake()''')

# 4. store: the lag
s = open("runner/store/serving.py").read()
s = s.replace("from .models import Action, Enrollment, Sender, Usage, db", "from .models import Action, Enrollment, InboxEvent, Sender, Usage, db")
s += '''

def inbox_lag(now: dt.datetime) -> float:
    """Seconds the oldest pending inbox event has waited to be applied (0 when none waits)."""
    oldest = InboxEvent.select(fn.MIN(InboxEvent.received_at)).where(InboxEvent.state == "pending").scalar()
    if oldest is None:
        return 0.0
    if isinstance(oldest, str):
        from .fields import from_db_time

        oldest = from_db_time(oldest)
    return max(0.0, (now - oldest).total_seconds())
'''
open("runner/store/serving.py", "w").write(s)

# 5. tests: the events are in the database when the answer comes
s = open("tests/server/test_app.py").read()
s = s.replace('''        assert [e.event_id for e in state.inbox.drain()] == ["e-1"]  # there when the answer came''',
              '''        assert stored() == ["e-1"]  # committed when the answer came''')
s = s.replace('''        assert state.inbox.drain() == []
    assert state.woken''', '''        assert stored() == ["e-1"]
    assert state.woken''')
s = s.replace('''    assert state.inbox.drain() == []''', '''    assert stored() == []''')
s = s.replace('''def test_a_chunked''', '''def stored() -> list[str]:
    return [row.event_id for row in InboxEvent.select().order_by(InboxEvent.id)]


def test_a_chunked''')
s = s.replace("from runner.store import db, open_store", "from runner.store import db, open_store\nfrom runner.store.models import InboxEvent")
open("tests/server/test_app.py", "w").write(s)
print("adapted")
