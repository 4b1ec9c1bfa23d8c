"""CLI command for vision-LLM descriptions (`describe`)."""
from __future__ import annotations

import json
import sys

import click

from .common import Progress, command, database_argument, echo_status, json_option, open_db


@command()
@database_argument
@click.option("--model", required=True, help="The vision model, as the server names it (llava:13b, gpt-4o-mini, ...)")
@click.option("--url", help="The server (default for --api ollama: http://127.0.0.1:11434; --api openai: "
                            "the base URL ending in /v1). Images leave this machine if it is remote")
@click.option("--api", type=click.Choice(["ollama", "openai"]), default="ollama", show_default=True,
              help="ollama: Ollama's /api/chat; openai: an OpenAI-compatible /chat/completions "
                   "(vLLM, llama.cpp, LM Studio, hosted services). The key, if any, is read from "
                   "IMAGECLUST_API_KEY (or OPENAI_API_KEY for openai)")
@click.option("--prompt", help="The prompt (default: a factual description; see the README)")
@click.option("--prompt-file", type=click.Path(), help="Read the prompt from this UTF-8 file")
@click.option("--tags", is_flag=True, help="Ask for JSON with tags as well; tags go to image_tags as 'vlm:MODEL'")
@click.option("--input", "input_", type=click.Choice(["thumbnail", "original"]), default="thumbnail",
              show_default=True, help="Send the stored thumbnail, or the file decoded at up to --max-side px "
                                      "(the thumbnail if the file is gone)")
@click.option("--max-side", type=int, default=768, show_default=True, help="Long side of originals sent, px")
@click.option("--concurrency", type=int, default=2, show_default=True, help="Requests in flight at once")
@click.option("--max-images", type=int, help="Describe at most N images this run")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds to wait for each answer")
@click.option("--retries", type=int, default=3, show_default=True,
              help="Retries of a request after a 429/5xx, a timeout or a malformed answer")
@json_option()
def describe(database, model, url, api, prompt, prompt_file, tags, input_, max_side, concurrency, max_images,
             timeout, retries, as_json):
    """Have a vision LLM describe every image of DATABASE (incremental: an image already
    described by this model with this prompt is not sent again; Ctrl-C, then the same
    command, resumes)."""
    from .. import pipeline
    from ..analysis.describe import summary_line

    progress = Progress("describing", unit="images")
    try:
        s = pipeline.describe(
            open_db(database), model=model, url=url, api=api, prompt=prompt, prompt_file=prompt_file, tags=tags,
            input=input_, max_side=max_side, concurrency=concurrency, max_images=max_images, timeout=timeout,
            retries=retries, on_status=echo_status, on_progress=progress)
    finally:
        progress.close()
    if as_json:
        click.echo(json.dumps(s.as_dict()))
    echo_status(summary_line(s))
    if s.interrupted:
        echo_status("interrupted: run the same command again to resume")
        sys.exit(130)


COMMANDS = (describe,)
