"""Tests of the setpay command line."""
