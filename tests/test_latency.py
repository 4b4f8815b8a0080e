"""Latency figures: medians with their spread, decode steps timed on a prefilled cache."""

from tprl_eval.latency import Timing, prefill_and_decode_latency, time_calls


def test_a_speedup_within_the_spread_is_marked_as_noise():
    reference = Timing(median=0.010, low=0.009, high=0.012)
    assert Timing(median=0.005, low=0.004, high=0.006).speedup_over(reference) == "2.00x"
    assert Timing(median=0.0095, low=0.008, high=0.0091).speedup_over(reference) == "1.05x (within noise)"


def test_time_calls_runs_warmup_then_timed_calls():
    calls = []
    timing = time_calls(lambda: calls.append(1), repeats=5, warmup=2)
    assert len(calls) == 7 and timing.low <= timing.median <= timing.high


def test_decode_steps_run_on_the_prefilled_pruned_cache(tprl_model, batch):
    seen = []
    handle = tprl_model.register_forward_hook(
        lambda module, args, kwargs, output: seen.append((kwargs["input_ids"].shape[1], kwargs["past_key_values"])),
        with_kwargs=True,
    )
    try:
        timings = prefill_and_decode_latency(tprl_model, batch, repeats=3, keep_ratio=1 / 9)
    finally:
        handle.remove()
    assert set(timings) == {"prefill", "decode"}
    decode_steps = [cache for length, cache in seen if length == 1]
    assert len(decode_steps) == 5  # 2 warm-up + 3 timed, one token each
    kept_length = batch["input_ids"].shape[1] - (144 - 16)
    assert decode_steps[0].get_seq_length() == kept_length  # the pruned prompt's cache, cropped back after each step
