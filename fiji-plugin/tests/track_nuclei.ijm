// Builds a 6-frame label hyperstack from the ground truth of `qcanet synth --frames 6`
// (series_gt/TRA/man_track000.tif ...), tracks it with the raw series as intensity, and writes
// what it found to a result file (checked by fiji-plugin/Makefile against man_track.txt).
// argument: "SERIES.tif,GT_FOLDER,RESULT.txt"
args = split(getArgument(), ",");
setBatchMode(true);
open(args[0]);
raw = getTitle();
list = "";
for (t = 0; t < 6; t++) {
    open(args[1] + "/TRA/man_track00" + t + ".tif");
    list = list + " image" + (t + 1) + "=[" + getTitle() + "]";
}
run("Concatenate...", "  title=gt open" + list);
run("Properties...", "channels=1 slices=51 frames=6 unit=micron pixel_width=0.8 pixel_height=0.8 voxel_depth=1.75");
run("Track Nuclei", "labels=gt intensity=[" + raw + "] voxel_z=1.75 voxel_y=0.8 voxel_x=0.8 max_displacement=8 max_gap=1 division_distance=10 frame_interval=0");
out = getTitle();
Stack.getDimensions(w, h, c, z, frames);
getVoxelSize(vw, vh, vd, unit);
Stack.getStatistics(n, mean, min, max);
bd = bitDepth();
// tracks: distinct Track values of the Tracks table (one row per nucleus per frame)
rows = Table.size("Tracks");
seen = newArray(rows + 1);
tracks = 0;
minMean = 1e30;
for (i = 0; i < rows; i++) {
    k = Table.get("Track", i, "Tracks");
    if (k > 0 && seen[k] == 0) { seen[k] = 1; tracks++; }
    minMean = minOf(minMean, Table.get("Mean", i, "Tracks"));
}
crit = Table.size("Criteria");
divisions = 0;
for (i = 0; i < crit; i++) divisions = divisions + Table.get("Divisions", i, "Criteria");
first = Table.get("Nuclei", 0, "Criteria");
last = Table.get("Nuclei", crit - 1, "Criteria");
firstFrame = Table.get("Frame", 0, "Criteria");
rounds = 0;
if (isOpen("Division rounds")) rounds = Table.size("Division rounds");
plots = 0;
for (i = 1; i <= nImages; i++) {
    selectImage(i);
    if (endsWith(getTitle(), "per frame")) plots++;
}
s = "title=" + out + "\nframes=" + frames + "\nslices=" + z + "\nbitdepth=" + bd + "\nvoxel=" + vd + "," + vh + "," + vw + "\nunit=" + unit;
s = s + "\nmax_id=" + max + "\ntracks=" + tracks + "\ndivisions=" + divisions + "\ncriteria_rows=" + crit;
s = s + "\nfirst_frame=" + firstFrame + "\nfirst_nuclei=" + first + "\nlast_nuclei=" + last + "\nrounds=" + rounds;
s = s + "\nplots=" + plots + "\nmin_mean_intensity=" + minMean + "\n";
File.saveString(s, args[2]);
print(s);
