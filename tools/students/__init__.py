"""The students p2m trains, one module each; `p2m.tools.train` and `p2m.tools.train_seq` are their public
import points. All of them train through `p2m.tools.trainloop.train_loop`.

- `common`: what the sequence students share (config, threads, the student folder)
- `smollm`: SmolLM2-135M weights from the teacher's GGUF
- `generator`: SmolLM2 + LoRA text generator
- `qa_reader`: MiniLM extractive QA reader
- `smollm_cls`: SmolLM2 + LoRA sequence classifier
"""

__all__ = ["common", "generator", "qa_reader", "smollm", "smollm_cls"]
