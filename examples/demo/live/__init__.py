"""The demo's real-time side: command views and hooks for Switchyard, and the /live/ page."""
