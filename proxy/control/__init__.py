"""The control plane: the admin API, config reload and the `warden keys` commands, above the app it steers."""
