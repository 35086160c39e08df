"""Records HF PEFT's get_nb_trainable_parameters() for fixture adapters loaded trainable, so the Java side
can check its `trainable params: N || all params: M` report against HF's own numbers.

Run: /work/V/bin/python trainable_reports.py  (writes ../resources/fixtures/hf-peft/trainable_reports.json)
"""
import json
import os

import transformers
from peft import PeftConfig, PeftModel, get_peft_model

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "resources", "fixtures", "hf-peft")
CASES = ["llama_lora", "gpt2_lora", "bert_lora", "qwen2_lora", "bert_tokcls_lora", "gpt2_ia3", "gpt2_prompt",
         "gpt2_prefix", "bert_prompt", "llama_prefix"]


def main():
    out = {}
    for case in CASES:
        d = os.path.join(ROOT, case)
        cfg = transformers.AutoConfig.from_pretrained(os.path.join(d, "base"))
        cls = getattr(transformers, cfg.architectures[0])
        base = cls.from_pretrained(os.path.join(d, "base"))
        adapter = os.path.join(d, "adapter")
        config = PeftConfig.from_pretrained(adapter)
        if config.is_prompt_learning:
            # HF cannot load a prompt-learning adapter as trainable: count a new adapter with the same config
            config.inference_mode = False
            model = get_peft_model(base, config)
        else:
            model = PeftModel.from_pretrained(base, adapter, is_trainable=True)
        trainable, total = model.get_nb_trainable_parameters()
        out[case] = {"trainable": int(trainable), "all": int(total)}
        print(case, out[case])
    with open(os.path.join(ROOT, "trainable_reports.json"), "w") as f:
        json.dump(out, f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
