"""What the dense tasks (depth, normals, boundaries, and segmentation on a multi-target layout)
share: the layouts of the multi-task benchmarks as data, their readers, the joint augmentation of
an image with several targets, one dataset for all of them, the data check and the predict loop.
The tasks themselves live in their own folders (tasks/depth, tasks/normals, tasks/boundary)."""
