"""Membership-inference attacks: each turns signals into per-example scores, higher =
member."""
