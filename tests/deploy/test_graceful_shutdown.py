"""An API process told to stop (SIGTERM, as a container runtime does at a deploy) finishes
the messages it accepted before it exits: none is lost, none is half-handled."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
from sqlmodel import Session, func, select

from bot.channels.whatsapp import WhatsAppMessageSeen
from core.db import make_engine
from core.settings import Settings
from ops.events import ConversionEvent, EventKind
from tests.bot.channels.test_whatsapp import SHOPPER, signed, text_event
from tests.deploy.processes import api_process, vitrine_env, whatsapp_settings
from tests.threads import at_once
from vitrine.runtime import build_runtime, seed_demo


def test_a_stopping_api_process_finishes_the_message_it_accepted(
        database_url: str, graph, tmp_path: Path) -> None:
    recorder, graph_url = graph
    runtime = build_runtime(Settings(database_url=database_url))
    seed_demo(runtime)
    runtime.close()
    env = vitrine_env(database_url=database_url, serve_runs_jobs="false",
                      **whatsapp_settings(graph_url))
    body, headers = signed(text_event("presente para minha mãe até R$200",
                                      message_id="wamid.during-deploy"))
    recorder.flowing.clear()  # the reply hangs on the wire while the process is told to stop

    with api_process(env, tmp_path / "api.log") as (url, process):
        def deliver() -> httpx.Response:
            return httpx.post(url + "/webhooks/whatsapp", content=body, headers=headers,
                              timeout=60)

        def stop_mid_turn() -> None:
            recorder.wait_for_send()
            process.send_signal(signal.SIGTERM)
            recorder.flowing.set()

        response, _ = at_once((deliver,), (stop_mid_turn,))
        assert response.status_code == 200
        # uvicorn exits by the signal it was stopped with, once it has shut down cleanly.
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)
        assert "Finished server process" in (tmp_path / "api.log").read_text()

    sent = recorder.texts_to(SHOPPER)
    assert sum("ideias" in text for text in sent) == 1, sent
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            assert session.get(WhatsAppMessageSeen, "wamid.during-deploy") is not None
            assert session.exec(select(func.count()).select_from(ConversionEvent).where(
                ConversionEvent.kind == EventKind.MESSAGE_RECEIVED)).one() == 1
    finally:
        engine.dispose()
