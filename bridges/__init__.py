"""Bridges from other async worlds (asyncio, LiveKit agents) to the trio engine."""
