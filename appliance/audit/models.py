"""Who did it: the actor recorded with every audit event."""

from __future__ import annotations

import getpass
from dataclasses import dataclass

__all__ = ["Actor"]


@dataclass(frozen=True)
class Actor:
    """The identity an event is attributed to, as it was at the time of the event."""

    kind: str  # user, token, cli, system, anonymous
    name: str
    id: str | None = None
    address: str | None = None
    display: str = ""  # the account's display name at the time

    @classmethod
    def system(cls) -> Actor:
        return cls(kind="system", name="appliance")

    @classmethod
    def cli(cls) -> Actor:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
        return cls(kind="cli", name=f"cli:{user}", address="local")

    @classmethod
    def anonymous(cls, address: str | None) -> Actor:
        return cls(kind="anonymous", name="anonymous", address=address)

    @classmethod
    def user(cls, user_id: int, username: str, address: str | None, *, via_token: bool = False,
             display_name: str = "") -> Actor:
        return cls(kind="token" if via_token else "user", name=username, id=str(user_id), address=address,
                   display=display_name)
