// Tracking errors end in the library's message in the Log, not a crash: an image without
// calibration and no voxel size given, then a negative displacement.
// argument: "GT_FOLDER,RESULT.txt"
args = split(getArgument(), ",");
setBatchMode(true);
list = "";
for (t = 0; t < 2; t++) {
    open(args[0] + "/TRA/man_track00" + t + ".tif");
    list = list + " image" + (t + 1) + "=[" + getTitle() + "]";
}
run("Concatenate...", "  title=gt open" + list);
run("Properties...", "channels=1 slices=51 frames=2 unit=pixel pixel_width=1 pixel_height=1 voxel_depth=1");
run("Track Nuclei", "labels=gt intensity=None");
run("Track Nuclei", "labels=gt intensity=None voxel_z=1.75 voxel_y=0.8 voxel_x=0.8 max_displacement=-1");
File.saveString("images open after the errors: " + nImages + "\n", args[1]);
