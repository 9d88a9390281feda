"""`tandem-verifier`: start the cloud verifier."""

from __future__ import annotations

import uvicorn
from pydantic_settings import CliApp

from verifier.backends import TargetBackend, load_backend
from verifier.core.logs import configure_logging
from verifier.core.models import default_target_dir
from verifier.settings import VerifierSettings


def main(argv: list[str] | None = None) -> None:
    settings = CliApp.run(VerifierSettings, cli_args=argv)
    configure_logging(settings.log_level)
    model = settings.model or str(default_target_dir())

    def factory() -> TargetBackend:
        return load_backend(
            settings.backend, model, settings.dtype, settings.device, settings.threads, settings.max_context,
            settings.cpu_linear,
        )

    from verifier.app import create_app

    app = create_app(factory, settings.session_ttl_s, settings.max_sessions)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
