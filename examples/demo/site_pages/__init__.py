"""The demo's pages: home, an echo form, login/logout, a redirect, and two probe views."""
