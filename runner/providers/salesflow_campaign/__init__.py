"""Salesflow campaigns (the v1 public API of seed 002): the driver, the webhook parser and the fake,
side by side. seqrun imports leads into a sender's Salesflow campaign and follows what the campaign
does: connections, replies and withdrawn invitations, by webhook and by polling."""
from __future__ import annotations

from runner.providers.salesflow_campaign.driver import CampaignProvider

__all__ = ["CampaignProvider"]
