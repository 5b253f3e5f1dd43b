"""A step-wise adapter for users who drive the loop themselves.

Any registered sampler function runs in a worker thread; each time it needs the denoiser
it hands ``(x, σ̃)`` to the caller and waits for x̂₀. The sampler's maths is unchanged
(no copy of its step logic, no hidden step index to get wrong)::

    loop = StepSampler("dpmpp_2m", x, sigmas)
    while not loop.done:
        x_in, sigma = loop.request       # state ``[B, ...]`` and σ̃ (float)
        loop.send(my_denoiser(x_in, sigma))
    result = loop.result
"""

from __future__ import annotations

import queue
import threading

_DONE = object()


class StepSampler:
    def __init__(self, sampler, x, sigmas, **kwargs):
        if isinstance(sampler, str):
            from . import get_sampler

            spec = get_sampler(sampler)
            fn, kwargs = spec.fn, {**spec.defaults, **kwargs}
        else:
            fn = sampler
        self._req: queue.Queue = queue.Queue(maxsize=1)
        self._resp: queue.Queue = queue.Queue(maxsize=1)
        self.result = None
        self._error: BaseException | None = None
        self.request = None
        self.done = False
        self.n_requests = 0

        def ask(x_in, sigma):
            self._req.put((x_in, float(sigma)))
            out = self._resp.get()
            if out is _DONE:  # the caller closed the loop
                raise GeneratorExit
            return out

        def run():
            try:
                self._req.put((_DONE, fn(ask, x, sigmas, **kwargs)))
            except GeneratorExit:
                pass
            except BaseException as e:  # handed to the caller's thread
                self._req.put((_DONE, e))

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        self._next()

    def _next(self):
        a, b = self._req.get()
        if a is _DONE:
            self.done, self.request = True, None
            self._thread.join()
            if isinstance(b, BaseException):
                raise b
            self.result = b
        else:
            self.request = (a, b)
            self.n_requests += 1

    def send(self, x0):
        """Give x̂₀ for the pending request; advances to the next request or the end."""
        if self.done:
            raise RuntimeError("the sampler has finished; read .result")
        self._resp.put(x0)
        self._next()

    def close(self):
        """Abandon an unfinished loop (the worker thread exits)."""
        if not self.done:
            self._resp.put(_DONE)
            self._thread.join()
            self.done = True
