from setuptools import setup


setup(
    name="tprl",
    version="0.1.0",
    description="TPRL: reinforcement-learned visual-token pruning for LLaVA, the Hugging Face way.",
    python_requires=">=3.10",
    packages=[
        "modeling_tprl",
        "tprl_digit_world",
        "tprl_train",
        "tprl_eval",
        "tprl_eval.metrics",
        "tprl_hub_cards",
        "tprl_demo",
    ],
    package_dir={
        "modeling_tprl": "modeling_tprl",
        "tprl_digit_world": "digit_world",
        "tprl_train": "train",
        "tprl_eval": "eval",
        "tprl_hub_cards": "hub_cards",
        "tprl_demo": "demo",
    },
    package_data={
        "tprl_digit_world": [
            "tiny_llava/*",
            "tiny_llava_tprl/*",
            "tiny_llava_next/*",
            "tiny_llava_next_tprl/*",
            "tiny_qwen2_5_vl/*",
            "tiny_qwen2_5_vl_tprl/*",
        ],
        "tprl_train": ["configs/*.yaml"],
        "tprl_hub_cards": ["*.md"],
        "tprl_eval.metrics": ["*/*.py"],
        "tprl_eval": ["configs/*/config.json"],
    },
    install_requires=[
        "torch>=2.4",
        "transformers>=5.23,<5.24",
        "trl>=1.16,<1.17",
        "peft>=0.21,<0.22",
        "datasets>=5.2,<6",
        "evaluate>=0.4.6,<0.5",
        "huggingface_hub>=2.4,<3",
        "accelerate>=1.15,<2",
        "safetensors>=0.6",
        "pillow>=10",
        "scikit-learn>=1.5",
        "matplotlib>=3.8",
        "pyyaml>=6",
        "tqdm>=4.66",
    ],
    extras_require={
        "dev": ["pytest>=8", "ruff>=0.17,<0.18"],
        # The demo page (gradio_client comes with gradio); its browser test drives Debian's chromium with Playwright.
        "demo": ["gradio>=6.31,<7"],
        "browser": ["playwright>=1.50"],
        # What lmms-eval 0.7.3 needs to load and run tasks; lmms-eval itself installs with --no-deps (README), since
        # its full dependency list pulls a newer torch with CUDA packages.
        "lmms": ["loguru>=0.7", "sacrebleu>=2.4", "pytz", "tenacity>=8.3", "filelock>=3.10,<4", "pytablewriter"],
        # What transformers' own test suites import, for scripts/run_transformers_suites.py.
        "suites": ["parameterized>=0.9", "httpx>=0.27"],
    },
    entry_points={
        "console_scripts": [
            "tprl-train-base=tprl_digit_world.train_base:main",
            "tprl-train=tprl_train.train_pruner:main",
            "tprl-prepare-data=tprl_train.prepare_data:main",
            "tprl-eval=tprl_eval.cli:main",
            "tprl-push=tprl_hub_cards.push:main",
            "tprl-flops=tprl_eval.flops:main",
            "tprl-demo=tprl_demo.app:main",
        ],
        "lmms_eval.models": ["tprl=tprl_eval.lmms_eval_model:MANIFEST"],
    },
)
