"""The adapter between amqtt 0.12.1's plugin hooks and gatehouse's decisions.

amqtt types stay in this module: the hooks unpack what they need from the session and
call the plain functions in `broker.access`.
"""

from __future__ import annotations

from dataclasses import dataclass

from amqtt.broker import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from broker import access


class GatehouseAuthPlugin(BaseAuthPlugin):
    """Admits a client or refuses it (CONNACK 5). Nothing is anonymous unless configured."""

    @dataclass
    class Config:
        allow_anonymous: bool = False

    async def authenticate(self, *, session: Session) -> bool:
        # Anonymous means "no username". A client that names itself must prove it;
        # allowing anonymous clients never admits one with wrong credentials.
        if session.username is None and self.config.allow_anonymous:
            session.is_anonymous = True
            return True
        return False


class GatehouseTopicPlugin(BaseTopicPlugin):
    """The topic ACL, asked by amqtt on every SUBSCRIBE, PUBLISH and delivery."""

    @dataclass
    class Config:
        pass

    async def topic_filtering(
        self,
        *,
        session: Session | None = None,
        topic: str | None = None,
        action: Action | None = None,
    ) -> bool:
        if session is None or topic is None:
            return False
        if getattr(session, "is_anonymous", False):
            return access.anonymous_may_use(topic)
        return False
