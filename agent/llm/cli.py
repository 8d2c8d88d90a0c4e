"""Engine subcommands (generate, chat, info, convert) and the shared model options.

``add_model_args`` / ``open_model`` are used by every subcommand that needs a model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from agent.errors import AgentError
from agent.llm import llama2
from agent.llm.protocol import SAMPLING_DEFAULTS as S


def add_model_args(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    """The model options, with llama.cpp's familiar spellings."""
    g = p.add_argument_group("model")
    src = g.add_mutually_exclusive_group(required=required)
    src.add_argument("-m", "--model", metavar="PATH", help="GGML v3 .bin or GGUF model file")
    src.add_argument(
        "--script",
        metavar="FILE",
        help="use a scripted generator instead of a model: a JSON list of outputs, "
        "returned in order (for demos and tests)",
    )
    g.add_argument(
        "-c",
        "--n-ctx",
        "--ctx-size",
        dest="n_ctx",
        type=int,
        default=llama2.CONTEXT_LENGTH,
        help=f"context window in tokens (default {llama2.CONTEXT_LENGTH})",
    )
    g.add_argument(
        "-t",
        "--threads",
        type=int,
        default=None,
        help="threads for the engine (default: number of cores)",
    )
    g.add_argument(
        "--rope-freq-base",
        type=float,
        default=None,
        help=f"RoPE base (default {llama2.ROPE_FREQ_BASE:g})",
    )
    g.add_argument(
        "--rope-freq-scale",
        type=float,
        default=None,
        help=f"RoPE scale, e.g. 0.5 for doubled context (default {llama2.ROPE_FREQ_SCALE})",
    )
    g.add_argument(
        "-gqa",
        "--gqa",
        dest="n_gqa",
        type=int,
        default=None,
        help="grouped-query factor override (GGML files; inferred from shapes)",
    )
    g.add_argument(
        "-eps",
        "--rms-norm-eps",
        dest="rms_norm_eps",
        type=float,
        default=None,
        help=f"RMSNorm epsilon override (GGML files; default {llama2.RMS_NORM_EPS:g} for Llama-2)",
    )
    g.add_argument(
        "--prompt-cache",
        metavar="DIR",
        default=None,
        help="directory of the persistent prompt cache: KV state of earlier prompts, reused "
        "across runs (default: ~/.cache/agent/prompts, or $AGENT_CACHE_DIR/prompts)",
    )
    g.add_argument(
        "--no-prompt-cache",
        action="store_true",
        help="neither read nor write the persistent prompt cache",
    )


def open_model(args: argparse.Namespace, *, quiet: bool = False) -> Any:
    """Load the model named by ``add_model_args`` options, with progress on stderr."""
    if getattr(args, "script", None):
        from agent.llm.scripted import ScriptedModel

        path = Path(args.script)
        try:
            outputs = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise AgentError(f"cannot read script {path}: {exc}") from exc
        if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
            raise AgentError(f"script {path} must be a JSON list of strings (one per model call)")
        return ScriptedModel(outputs, name=path.name)
    from agent.llm import load_model

    if not quiet:
        print(f"loading {args.model} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    model = load_model(
        args.model,
        n_ctx=args.n_ctx,
        threads=args.threads,
        n_gqa=args.n_gqa,
        rms_norm_eps=args.rms_norm_eps,
        rope_freq_base=args.rope_freq_base,
        rope_freq_scale=args.rope_freq_scale,
    )
    progress = None
    if not quiet and sys.stderr.isatty():

        def progress(done: int, total: int) -> None:
            print(
                f"\rpreparing weights {done}/{total}",
                end="" if done < total else "\n",
                file=sys.stderr,
                flush=True,
            )

    model.prepare(progress)
    if not getattr(args, "no_prompt_cache", True):
        from agent.llm.prompt_cache import PromptCache

        model.prompt_cache = PromptCache(getattr(args, "prompt_cache", None))
    if not quiet:
        from agent.llm.kernels import describe

        print(
            f"loaded in {time.perf_counter() - t0:.2f} s ({describe()})",
            file=sys.stderr,
            flush=True,
        )
    return model


def add_sampling_args(p: argparse.ArgumentParser, *, temperature: float = S.temperature) -> None:
    g = p.add_argument_group("sampling")
    g.add_argument(
        "-n",
        "--n-predict",
        dest="max_tokens",
        type=int,
        default=S.max_tokens,
        help=f"maximum tokens to generate (default {S.max_tokens})",
    )
    g.add_argument(
        "--temp",
        dest="temperature",
        type=float,
        default=temperature,
        help=f"temperature; 0 = greedy (default {temperature})",
    )
    g.add_argument("--top-k", type=int, default=S.top_k, help=f"top-k; 0 = off (default {S.top_k})")
    g.add_argument(
        "--top-p", type=float, default=S.top_p, help=f"nucleus top-p (default {S.top_p})"
    )
    g.add_argument(
        "--repeat-penalty",
        type=float,
        default=S.repeat_penalty,
        help=f"penalty on the last {S.repeat_last_n} tokens, 1.0 = off "
        f"(default {S.repeat_penalty})",
    )
    g.add_argument("--seed", type=int, default=None, help="random seed, for reproducible output")


def sampling_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "repeat_penalty": args.repeat_penalty,
        "seed": args.seed,
    }


def _speed_report(model: Any, elapsed_load: float | None = None) -> str:
    st = getattr(model, "last_stats", None)
    if st is None:
        return ""
    new = st.prompt_tokens - st.cached_tokens
    pp = new / st.prompt_seconds if st.prompt_seconds > 0 else 0.0
    tg = st.generated_tokens / st.generate_seconds if st.generate_seconds > 0 else 0.0
    parts = [] if elapsed_load is None else [f"load {elapsed_load:.2f} s"]
    parts += [
        f"prompt {st.prompt_tokens} tokens ({st.cached_tokens} cached) at {pp:.1f} tok/s",
        f"generated {st.generated_tokens} tokens at {tg:.1f} tok/s",
        f"stop: {st.stop_reason or 'n/a'}",
    ]
    return "; ".join(parts)


def cmd_generate(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    model = open_model(args, quiet=args.quiet)
    load_s = time.perf_counter() - t0
    prompt = args.prompt
    if args.file:
        prompt = Path(args.file).read_text(encoding="utf-8")
    if prompt is None:
        raise AgentError("give a prompt with -p PROMPT or -f FILE")
    if args.chat:
        from agent.llm.prompts import chat_prompt

        prompt = chat_prompt(prompt)
    if not args.quiet and not args.chat:
        sys.stdout.write(prompt)
    for piece in model.generate(prompt, stop=args.stop, **sampling_kwargs(args)):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    if not args.quiet:
        print(_speed_report(model, load_s), file=sys.stderr)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from agent.errors import ContextLengthError
    from agent.llm.prompts import Turn, chat_prompt

    model = open_model(args)
    history: list[Turn] = []
    interactive = sys.stdin.isatty()
    if interactive:
        print(
            "Chat with the model in the Airoboros template. /reset forgets the conversation, /quit "
            "(or Ctrl-D) leaves, Ctrl-C stops an answer.",
            file=sys.stderr,
        )
    while True:
        try:
            if interactive:
                line = input("USER: ")
            else:
                line = sys.stdin.readline()
                if not line:
                    break
                line = line.rstrip("\n")
        except EOFError:
            break
        except KeyboardInterrupt:
            print(file=sys.stderr)
            break
        if not line.strip():
            continue
        if line.strip() in ("/quit", "/exit"):
            break
        if line.strip() == "/reset":
            history.clear()
            print("(conversation forgotten)", file=sys.stderr)
            continue
        prompt = chat_prompt(line, history)
        while history and len(model.tokenize(prompt)) + args.max_tokens > model.n_ctx:
            history.pop(0)  # forget the oldest turns rather than fail
            prompt = chat_prompt(line, history)
        answer: list[str] = []
        sys.stdout.write("ASSISTANT:")
        try:
            for piece in model.generate(prompt, stop=["USER:"], **sampling_kwargs(args)):
                answer.append(piece)
                sys.stdout.write(piece)
                sys.stdout.flush()
        except KeyboardInterrupt:
            sys.stdout.write(" [stopped]")
        except ContextLengthError as exc:
            print(f"\n(error: {exc})", file=sys.stderr)
            continue
        sys.stdout.write("\n")
        sys.stdout.flush()
        history.append(Turn(line, "".join(answer)))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "generate",
        help="generate text from a prompt (llama.cpp-style flags)",
        description="Stream a continuation of PROMPT, then print load time and prompt/generation "
        "speed on stderr. With --chat the prompt is wrapped in the Airoboros chat template.",
    )
    add_model_args(p)
    p.add_argument("-p", "--prompt", help="the prompt text")
    p.add_argument("-f", "--file", help="read the prompt from a file")
    p.add_argument(
        "--chat", action="store_true", help="wrap the prompt in the Airoboros chat template"
    )
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the generated text")
    add_sampling_args(p, temperature=0.8)
    p.set_defaults(handler=cmd_generate)

    p = sub.add_parser(
        "chat",
        help="interactive chat in the Airoboros template",
        description="Chat with the model. The conversation is kept as history (oldest turns are "
        "dropped when the context fills). Commands: /reset, /quit. Ctrl-C stops the current "
        "answer, not the chat.",
    )
    add_model_args(p)
    add_sampling_args(p)
    p.set_defaults(handler=cmd_chat)

    from agent.llm.cli_files import register_file_commands

    register_file_commands(sub)
