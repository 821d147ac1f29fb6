// A two-frame hyperstack is segmented frame by frame, with a table and a plot of nuclei per frame.
// argument: "EMBRYO.tif,RESULT.txt"
args = split(getArgument(), ",");
setBatchMode(true);
open(args[0]);
a = getTitle();
run("Duplicate...", "title=second duplicate");
run("Concatenate...", "  title=series open image1=[" + a + "] image2=second");
Stack.getDimensions(w, h, c, z, t);
run("Segment Nuclei 3D", "voxel_z=1.75 voxel_y=0.8 voxel_x=0.8 model=[Embedded default] device=CPU foreground_threshold=-1 centre_threshold=-1 minimum_volume=-1");
Stack.getDimensions(w2, h2, c2, z2, t2);
rows = Table.size("Nuclei per frame");
n1 = Table.get("Nuclei", 0, "Nuclei per frame");
n2 = Table.get("Nuclei", 1, "Nuclei per frame");
File.saveString("input_frames=" + t + "\nresult_frames=" + t2 + "\nresult_slices=" + z2 + "\nrows=" + rows + "\nsame=" + (n1 == n2 && n1 > 0) + "\n", args[1]);
