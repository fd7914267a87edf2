"""Reading source media (video files, GIFs, images, in-memory arrays) into uint8 frames."""
