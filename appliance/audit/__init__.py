"""The audit trail: tags, the actor model and the recorder (the only writer of audit events)."""

from appliance.audit.gate import RepeatGate
from appliance.audit.models import Actor
from appliance.audit.recorder import canonical_json, record_event
from appliance.audit.tags import AuditTag

__all__ = ["Actor", "AuditTag", "RepeatGate", "canonical_json", "record_event"]
