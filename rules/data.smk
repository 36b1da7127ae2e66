# Data: the embedded procedural dataset, and the split lists that point the loader at images (embedded, ImageNet or a
# plain image folder, src/eea_repro/data/folder.py).

if PLAN.kind == "embedded":

    rule embedded_dataset:
        conda:
            "../envs/report.yaml"
        output:
            classes=PLAN.classes_file,
            labels=expand(
                "results/data/embedded/{split}/labels.txt",
                split=["train", "val", "test", "two_object"],
            ),
        params:
            settings=config["dataset"]["embedded"],
            seed=config["seed"],
        threads: 4  # images are rendered and written in parallel (each from its own random stream)
        log:
            "logs/data/embedded_dataset.log",
        benchmark:
            "benchmarks/data/embedded_dataset.tsv"
        script:
            "../scripts/make_embedded_dataset.py"

    rule split_lists:
        conda:
            "../envs/report.yaml"
        input:
            labels=expand(
                "results/data/embedded/{split}/labels.txt",
                split=["train", "val", "test", "two_object"],
            ),
        output:
            expand(
                "results/data/splits/{split}.txt",
                split=["train", "val", "explainer_train", "explainer_val", "test", "two_object"],
            ),
        params:
            kind="embedded",
            explainer=config["explainer"],
            seed=config["seed"],
        log:
            "logs/data/split_lists.log",
        script:
            "../scripts/make_split_lists.py"

elif PLAN.kind == "folder":

    rule split_lists:
        conda:
            "../envs/report.yaml"
        output:
            lists=expand(
                "results/data/splits/{split}.txt",
                split=["explainer_train", "explainer_val", "test"],
            ),
            classes=PLAN.classes_file,
            labels=FOLDER_LABELS,
            skipped="results/data/skipped_images.csv",
            skipped_summary="results/data/skipped_images.json",
            **({"augmented": directory(FOLDER_AUGMENTED)} if config["dataset"]["folder"]["augment"] else {}),
            **({"masks": directory(FOLDER_MASKS)} if config["dataset"]["folder"]["boxes"] else {}),
        params:
            kind="folder",
            folder=config["dataset"]["folder"],
            on_bad_image=config["dataset"]["on_bad_image"],
            explainer=config["explainer"],
            seed=config["seed"],
        threads: 4  # images are decoded once here to check them
        log:
            "logs/data/split_lists.log",
        script:
            "../scripts/make_split_lists.py"

else:

    rule split_lists:
        conda:
            "../envs/report.yaml"
        input:
            labels=config["imagenet_labels"],
        output:
            lists=expand(
                "results/data/splits/{split}.txt",
                split=["explainer_train", "explainer_val", "test"],
            ),
            classes=PLAN.classes_file,
            skipped="results/data/skipped_images.csv",
            skipped_summary="results/data/skipped_images.json",
        params:
            kind="imagenet",
            image_dir=PLAN.image_root,
            counts=config["dataset"]["imagenet"],
            on_bad_image=config["dataset"]["on_bad_image"],
            explainer=config["explainer"],
            seed=config["seed"],
        threads: 4  # images are decoded once here to check them
        log:
            "logs/data/split_lists.log",
        script:
            "../scripts/make_split_lists.py"
