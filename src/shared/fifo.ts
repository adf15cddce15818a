/**
 * A first-in first-out queue: an array read from a moving head, so that taking from the front is
 * O(1) (Array.prototype.shift moves every element). The taken prefix is dropped at once when the
 * queue empties, and in one splice once it is most of the array.
 */
export class Fifo<T> {
  private items: (T | undefined)[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  /** the oldest item, left in place; undefined when empty */
  peek(): T | undefined {
    return this.items[this.head];
  }

  /** removes and returns the oldest item; undefined when empty */
  shift(): T | undefined {
    if (this.head === this.items.length) return undefined;
    const item = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head === this.items.length) {
      this.items.length = 0;
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items.splice(0, this.head);
      this.head = 0;
    }
    return item;
  }
}
