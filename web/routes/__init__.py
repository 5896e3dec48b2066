"""The web app's routes, one module per thing a reader looks at; ``web.app`` includes them."""
