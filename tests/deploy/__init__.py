"""Tests of the deployment: the provisioning script, a bank on a SoftHSM token, the image."""
