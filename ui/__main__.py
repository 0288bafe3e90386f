"""Run the search page: `python -m ui --host H --port P` (defaults from UI_HOST / UI_PORT)."""
from __future__ import annotations

import argparse
import os

# Gradio reads these when it is imported: no telemetry or version checks from a self-hosted page.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("GRADIO_SSR_MODE", "False")

from services.common.http import configure_logging  # noqa: E402
from ui.app import CSS, build_app  # noqa: E402
from ui.config import get_settings  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m ui", description="Serve the image search page.")
    parser.add_argument("--host", default=settings.host, help=f"address to listen on (default {settings.host})")
    parser.add_argument("--port", type=int, default=settings.port, help=f"port (default {settings.port})")
    parser.add_argument("--api-url", default=settings.api_url,
                        help=f"the gateway's base URL (default API_URL = {settings.api_url})")
    args = parser.parse_args(argv)

    configure_logging(settings.log_level)
    settings = settings.model_copy(update={"host": args.host, "port": args.port, "api_url": args.api_url.rstrip("/")})
    app = build_app(settings)
    app.queue(default_concurrency_limit=8)
    print(f"Image search UI on http://{args.host}:{args.port} (gateway {settings.api_url})", flush=True)
    app.launch(server_name=args.host, server_port=args.port, css=CSS, show_error=False, quiet=True,
               ssr_mode=False, footer_links=["api", "settings"])


if __name__ == "__main__":
    main()
