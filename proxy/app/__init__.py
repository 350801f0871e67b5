"""The composition root: the app factory, its middleware, and how each wing joins the app."""
