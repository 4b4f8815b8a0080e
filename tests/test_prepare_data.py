"""`tprl-prepare-data` on a small fixture in LLaVA-1.5's instruction-data layout."""

import json

import datasets
import lmms_fixtures
import numpy as np
import pytest
from PIL import Image

from tprl_train.data import VQACollator
from tprl_train.prepare_data import PrepareDataArguments, image_id, main, prepare, short_answer_turns


SHORT = "\nAnswer the question using a single word or phrase."


@pytest.fixture()
def llava_layout(tmp_path):
    """llava_v1_5_mix665k.json's layout: a VQA record of several short-answer turns, a long-answer conversation, a
    text-only record, and a VQA record on a COCO image that POPE evaluates on."""
    for name in ("coco/train2017/000000033471.jpg", "gqa/images/n161313.jpg", "coco/train2017/000000310196.jpg"):
        path = tmp_path / "images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.random.default_rng(len(name)).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
    records = [
        {
            "id": "000000033471",
            "image": "coco/train2017/000000033471.jpg",
            "conversations": [
                {"from": "human", "value": "<image>\nWhat color is the bus?" + SHORT},
                {"from": "gpt", "value": "Red"},
                {"from": "human", "value": "How many people are there?" + SHORT},
                {"from": "gpt", "value": "2"},
            ],
        },
        {
            "id": "n161313",
            "image": "gqa/images/n161313.jpg",
            "conversations": [
                {"from": "human", "value": "<image>\nDescribe the image in detail."},
                {"from": "gpt", "value": "A long description."},
                {"from": "human", "value": "Is the sky blue?" + SHORT},
                {"from": "gpt", "value": "Yes"},
            ],
        },
        {
            "id": "sharegpt",
            "conversations": [{"from": "human", "value": "Hi" + SHORT}, {"from": "gpt", "value": "Hi"}],
        },
        {
            "id": "000000310196",
            "image": "coco/train2017/000000310196.jpg",
            "conversations": [
                {"from": "human", "value": "<image>\nIs there a dog?" + SHORT},
                {"from": "gpt", "value": "No"},
            ],
        },
    ]
    (tmp_path / "mix.json").write_text(json.dumps(records))
    (tmp_path / "pope_ids.txt").write_text("COCO_val2014_000000310196\n")
    return tmp_path


def test_short_answer_turns_become_rows_and_benchmark_images_are_dropped(llava_layout, tmp_path, processor):
    main(
        [
            *["--conversations", str(llava_layout / "mix.json"), "--image_folder", str(llava_layout / "images")],
            *["--output_dir", str(tmp_path / "out"), "--exclude_image_ids", str(llava_layout / "pope_ids.txt")],
        ]
    )
    dataset = datasets.load_from_disk(str(tmp_path / "out"))
    assert sorted(zip(dataset["question"], dataset["answer"])) == [
        ("How many people are there?", "2"),
        ("Is the sky blue?", "Yes"),
        ("What color is the bus?", "Red"),
    ]
    assert dataset[0]["image"].size == (32, 32)
    batch = VQACollator(processor)([dataset[i] for i in range(3)])  # what the main job's collator reads
    assert batch["labels"].ne(-100).any(1).all()

    def without_exclusion(name: str, limit: int | None = None) -> datasets.Dataset:
        folder = str(llava_layout / "images")
        output = str(tmp_path / name)
        return prepare(
            PrepareDataArguments(
                output_dir=output, conversations=str(llava_layout / "mix.json"), image_folder=folder, limit=limit
            )
        )

    everything = without_exclusion("everything")
    assert "Is there a dog?" in everything["question"]  # the POPE image is kept when not excluded
    assert without_exclusion("limited", limit=2)["question"] == everything["question"][:2]  # seeded shuffle


def test_a_hugging_face_dataset_in_llava_layout_with_decoded_images(tmp_path):
    image = Image.new("RGB", (16, 16), "red")
    conversations = [{"from": "human", "value": "<image>\nWhat color?" + SHORT}, {"from": "gpt", "value": "red"}]
    datasets.Dataset.from_list([{"image": image, "conversations": conversations}]).save_to_disk(str(tmp_path / "hf"))
    dataset = prepare(PrepareDataArguments(conversations=str(tmp_path / "hf"), output_dir=str(tmp_path / "out")))
    assert dataset[0]["question"] == "What color?" and dataset[0]["image"].getpixel((0, 0)) == (255, 0, 0)


def test_ids_and_turns():
    assert image_id("coco/train2017/000000310196.jpg") == image_id("COCO_val2014_000000310196") == "310196"
    assert image_id("gqa/images/n161313.jpg") == "n161313"
    turns = [{"from": "human", "value": "<image>\nDescribe it."}, {"from": "gpt", "value": "A cat."}]
    assert short_answer_turns(turns) == []


def test_missing_images_and_empty_results_are_clear_errors(llava_layout, tmp_path):
    with pytest.raises(FileNotFoundError, match="Image .*000000033471.jpg of record '000000033471' is missing"):
        prepare(PrepareDataArguments(conversations=str(llava_layout / "mix.json"), output_dir=str(tmp_path / "o")))
    (tmp_path / "none.json").write_text(json.dumps([{"id": "x", "conversations": []}]))
    with pytest.raises(ValueError, match="No short-answer turns with an image"):
        prepare(PrepareDataArguments(conversations=str(tmp_path / "none.json"), output_dir=str(tmp_path / "o")))


@pytest.fixture()
def vqa_layouts(tmp_path):
    """lmms-lab VQAv2 and GQA train splits in their Hub layouts and schemas."""
    vqav2 = [
        {"question_id": i, "image_id": image_id, "question": question, "question_type": "what",
         "answer_type": "other", "multiple_choice_answer": answer, "image": lmms_fixtures.image(i),
         "answers": [{"answer": answer, "answer_confidence": "yes", "answer_id": k} for k in range(1, 11)]}
        for i, (image_id, question, answer) in enumerate(
            [(9, "What is it? ", "cat"), (310196, "Is it red?", "yes"), (25, "How many?", "2")]
        )
    ]  # fmt: skip
    gqa_questions = [
        {"id": f"q{i}", "imageId": f"n{i % 2}", "question": question, "answer": answer, "fullAnswer": answer}
        for i, (question, answer) in enumerate([("Which side?", "left"), ("Is it a car?", "no"), ("Color?", "red")])
    ]
    gqa_images = [{"id": f"n{i}", "image": lmms_fixtures.image(10 + i, (48, 24))} for i in range(2)]
    image_features = datasets.Features({"id": datasets.Value("string"), "image": datasets.Image()})
    return {
        "vqav2": lmms_fixtures.write_layout(tmp_path / "VQAv2", {None: ("train", vqav2, None)}),
        "gqa": lmms_fixtures.write_layout(
            tmp_path / "GQA",
            {
                "train_balanced_instructions": ("train", gqa_questions, None),
                "train_balanced_images": ("train", gqa_images, image_features),
            },
        ),
    }


def test_vqav2_layout_gives_one_row_per_question_without_excluded_images(vqa_layouts, llava_layout, tmp_path):
    dataset = prepare(
        PrepareDataArguments(
            output_dir=str(tmp_path / "out"),
            vqa_dataset=str(vqa_layouts["vqav2"]),
            exclude_image_ids=str(llava_layout / "pope_ids.txt"),  # COCO 310196, a POPE image
        )
    )
    assert sorted(zip(dataset["question"], dataset["answer"])) == [("How many?", "2"), ("What is it?", "cat")]
    assert datasets.load_from_disk(str(tmp_path / "out"))[0]["image"].size == (40, 32)


def test_gqa_layout_joins_its_images_config_and_pools_with_llava_records(
    vqa_layouts, llava_layout, processor, tmp_path
):
    args = PrepareDataArguments(
        output_dir=str(tmp_path / "out"),
        conversations=str(llava_layout / "mix.json"),
        image_folder=str(llava_layout / "images"),
        vqa_dataset=str(vqa_layouts["gqa"]),
        vqa_config="train_balanced_instructions",
        image_config="train_balanced_images",
    )
    dataset = prepare(args)
    gqa = {row["question"]: row for row in dataset if row["question"] in ("Which side?", "Is it a car?", "Color?")}
    assert {question: row["answer"] for question, row in gqa.items()} == {
        "Which side?": "left", "Is it a car?": "no", "Color?": "red"
    }  # fmt: skip
    assert gqa["Is it a car?"]["image"].size == (48, 24)
    assert len(dataset) == 3 + 4  # the GQA questions and LLaVA's four short-answer turns with an image
    batch = VQACollator(processor)([dataset[0], dataset[1]])
    assert batch["labels"].ne(-100).any()


def test_vqa_layout_errors_name_what_is_missing(vqa_layouts, tmp_path):
    with pytest.raises(ValueError, match="--image_config"):
        prepare(
            PrepareDataArguments(
                output_dir=str(tmp_path / "o"),
                vqa_dataset=str(vqa_layouts["gqa"]),
                vqa_config="train_balanced_instructions",
            )
        )
    with pytest.raises(ValueError, match="--conversations"):
        PrepareDataArguments(output_dir=str(tmp_path / "o"))
