"""The `tts` ensemble in-process: frontend -> acoustic -> vocoder -> join for a batch of requests.

The same steps and tensors as the Triton ensemble (serving.contract.PIPELINE; a test checks the
generated ensemble against it), run in this process: for the soak's and the benchmark's checks, the
steps' tests, and the streaming model. Each request carries its tensors by name from step to step, as
the ensemble does; a request that a step answers with a RequestError leaves the batch there.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from serving.contract import ACOUSTIC, FP32, PIPELINE, VOCODER, ExportConfig
from serving.runtime.sessions import RuntimeOptions
from serving.steps import RequestError, Step, Tensors
from serving.steps.acoustic import AcousticStep
from serving.steps.frontend import FrontendStep
from serving.steps.join import JoinStep
from serving.steps.vocoder import VocoderStep


class Pipeline:
    def __init__(self, steps: list[Step]):
        if [step.model for step in steps] != list(PIPELINE):
            raise ValueError(f"a pipeline runs the steps {[m.name for m in PIPELINE]} in that order")
        self.steps = steps

    @classmethod
    def load(cls, config: ExportConfig, acoustic_dir: Path, vocoder_dir: Path, options: RuntimeOptions = RuntimeOptions(),
             vocoder_runtime: str = FP32, vocoder_options: RuntimeOptions | None = None, bucket_frames: int = 1,
             max_frames: int | None = None) -> "Pipeline":
        """The steps on the files of an export directory (both dirs the same) or of a CPU model repository."""
        return cls([FrontendStep(config), AcousticStep(config, acoustic_dir, options, max_frames),
                    VocoderStep(config, vocoder_dir, vocoder_options or options, vocoder_runtime,
                                bucket_frames=bucket_frames), JoinStep(config)])

    @classmethod
    def from_repository(cls, repository: Path) -> "Pipeline":
        """The steps of a generated CPU model repository with the settings its configs give them (backends,
        threads, vocoder precision and buckets): what its server computes, in this process."""
        repository = Path(repository)
        acoustic_dir, vocoder_dir = repository / ACOUSTIC.name / "1", repository / VOCODER.name / "1"
        acoustic, vocoder = (config_parameters(repository / m.name / "config.pbtxt") for m in (ACOUSTIC, VOCODER))
        return cls.load(ExportConfig.read(acoustic_dir), acoustic_dir, vocoder_dir,
                        RuntimeOptions.from_parameters(acoustic), vocoder["runtime"],
                        RuntimeOptions.from_parameters(vocoder), int(vocoder["bucket_frames"]),
                        int(acoustic["max_sentence_frames"]))

    @property
    def frontend(self) -> FrontendStep:
        return self.steps[0]

    @property
    def acoustic(self) -> AcousticStep:
        return self.steps[1]

    @property
    def vocoder(self) -> VocoderStep:
        return self.steps[2]

    def process(self, requests: list[Tensors], seconds: dict[str, float] | None = None) -> list[Tensors | RequestError]:
        """Each request's inputs (serving.contract.TTS) -> its outputs (AUDIO, SAMPLE_RATE), or its error.

        `seconds`, if given, gets each step's wall time added under the step's model name."""
        tensors: list[Tensors | RequestError] = [dict(request) for request in requests]
        for step in self.steps:
            live = [i for i, t in enumerate(tensors) if not isinstance(t, RequestError)]
            inputs = [{t.name: tensors[i][t.name] for t in step.model.inputs if t.name in tensors[i]} for i in live]
            started = time.perf_counter()
            for i, result in zip(live, step.process(inputs) if live else []):
                tensors[i] = result if isinstance(result, RequestError) else {**tensors[i], **result}
            if seconds is not None:
                seconds[step.model.name] = seconds.get(step.model.name, 0.0) + time.perf_counter() - started
        outputs = [t.name for t in PIPELINE[-1].outputs]
        return [t if isinstance(t, RequestError) else {name: t[name] for name in outputs} for t in tensors]


_PARAMETER = re.compile(r'parameters \{ key: "(\w+)" value \{ string_value: "((?:[^"\\]|\\.)*)" \} \}')


def config_parameters(config_pbtxt: Path) -> dict[str, str]:
    """The string parameters of a config.pbtxt written by deploy.repository (one per line)."""
    return {key: re.sub(r"\\(.)", r"\1", value) for key, value in _PARAMETER.findall(Path(config_pbtxt).read_text())}
