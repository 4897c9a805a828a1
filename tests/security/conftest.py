"""The integration world (moto with the template's resources, the simulated TikTok, a movable clock), reused."""

from tests.integration.conftest import *  # noqa: F403 - fixtures: aws, clock, tiktok, stack, browser
